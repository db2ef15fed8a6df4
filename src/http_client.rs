//! The outbound HTTP client shared by webhooks, RFC 3161 timestamping and the CLI's
//! `--server` mode: hyper's pooled client over rustls with the aws-lc-rs provider, the one
//! crypto stack proctor uses. It sits below every module that speaks HTTP outward, so none of
//! them reaches into another (the recorder into the API) for it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use thiserror::Error;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: no answer within {seconds}s")]
    Timeout { url: String, seconds: u64 },
    /// The server answered with an error status; `message` is its `error` field when present.
    #[error("{status}: {message}")]
    Status { status: StatusCode, message: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client for `http://` and `https://`. With `ca_file`, only that PEM bundle is trusted (a
/// private CA); otherwise the system roots.
pub fn http_client(ca_file: Option<&Path>) -> Result<HttpClient, ClientError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
            }
            let tls = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| ClientError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(tls)
        }
        None => match builder.with_provider_and_native_roots(provider()) {
            Ok(b) => b,
            Err(e) => {
                // No system roots (a minimal container): plain http still works, and https
                // fails per request with a clear certificate error instead of at start-up.
                tracing::warn!(error = %e, "no system CA certificates; https receivers will not be trusted");
                let tls = rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ClientError::Tls(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
            }
        },
    };
    let connector = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// An error with its causes (`client error (Connect): tcp connect error: Connection refused`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
