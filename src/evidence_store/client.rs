//! The S3 client: whole-object PUTs under a COMPLIANCE lock, `If-None-Match: *`, and a
//! SHA-256 checksum the store must give back. Path-style requests, static credentials, no
//! `aws-config` (nothing is read from the environment or instance metadata behind our back).

use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumMode, ObjectLockMode};
use base64::Engine;

/// What the store said to one PUT.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// Stored; the store's SHA-256 equals ours.
    Stored,
    /// It was already there (412) and its SHA-256 equals ours: shipped before a crash.
    AlreadyThere,
    /// The store holds other bytes under this key, or returned another checksum.
    Mismatch { theirs: String },
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

pub struct S3 {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
}

fn b64(sha: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha)
}

/// Status (0 without a response) and a description of a failed call.
pub fn describe<E>(e: &SdkError<E, HttpResponse>) -> (u16, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    let what = match e.as_service_error() {
        Some(s) => format!(
            "HTTP {status} {}: {}",
            s.code().unwrap_or("?"),
            s.message().unwrap_or_default()
        ),
        None => format!("{}", DisplayErrorContext(e)),
    };
    (status, what)
}

impl S3 {
    pub fn new(endpoint: &str, region: &str, key_id: &str, secret: &str, bucket: &str) -> S3 {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(region.to_string()))
            .credentials_provider(Credentials::new(key_id, secret, None, None, "proctor"))
            .force_path_style(true)
            // Our SHA-256 is the checksum; no extra CRC trailer (and no chunked upload).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // The shipper retries on its own schedule; one attempt each, bounded in time.
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build();
        S3 {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.to_string(),
        }
    }

    /// PUTs one whole object, locked until `retain_until_ns`, only if the key is free.
    pub async fn put_locked(
        &self,
        key: &str,
        bytes: Vec<u8>,
        sha: &[u8; 32],
        retain_until_ns: i64,
    ) -> Result<Put, StoreError> {
        let ours = b64(sha);
        let until = DateTime::from_secs(retain_until_ns.div_euclid(1_000_000_000));
        let r = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .checksum_sha256(&ours)
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(until)
            .if_none_match("*")
            .send()
            .await;
        match r {
            Ok(out) => match out.checksum_sha256() {
                Some(theirs) if theirs == ours => Ok(Put::Stored),
                Some(theirs) => Ok(Put::Mismatch {
                    theirs: theirs.to_string(),
                }),
                // Not echoed by this store: ask for it.
                None => self.compare(key, &ours, Put::Stored).await,
            },
            Err(e) => match describe(&e) {
                (412, _) => self.compare(key, &ours, Put::AlreadyThere).await,
                (_, what) => Err(StoreError(format!("PUT {key}: {what}"))),
            },
        }
    }

    /// The stored object's SHA-256 against ours.
    async fn compare(&self, key: &str, ours: &str, equal: Put) -> Result<Put, StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| StoreError(format!("HEAD {key}: {}", describe(&e).1)))?;
        match head.checksum_sha256() {
            Some(theirs) if theirs == ours => Ok(equal),
            other => Ok(Put::Mismatch {
                theirs: other.unwrap_or("(none)").to_string(),
            }),
        }
    }
}
