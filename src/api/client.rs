//! The outbound HTTP client (webhooks, and the CLI's `--server` mode): hyper's pooled client
//! over rustls with the aws-lc-rs provider, the one crypto stack proctor uses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
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

/// Percent-encodes one path segment (ids are plain, but the CLI passes user input).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A proctor API endpoint with a bearer token.
pub struct ApiClient {
    base: String,
    token: String,
    client: HttpClient,
    timeout: Duration,
}

impl ApiClient {
    pub fn new(base: &str, token: &str, ca_file: Option<&Path>) -> Result<ApiClient, ClientError> {
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "{base:?}: expected an http:// or https:// URL"
            )));
        }
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(ClientError::Config("the token is empty".into()));
        }
        Ok(ApiClient {
            base,
            token,
            client: http_client(ca_file)?,
            timeout: Duration::from_secs(60),
        })
    }

    /// Reads the token from a file (trailing whitespace ignored), as `--token-file` does.
    pub fn from_token_file(
        base: &str,
        token_file: &Path,
        ca_file: Option<&Path>,
    ) -> Result<ApiClient, ClientError> {
        let token = std::fs::read_to_string(token_file).map_err(|e| {
            ClientError::Config(format!(
                "cannot read the token file {}: {e}",
                token_file.display()
            ))
        })?;
        ApiClient::new(base, &token, ca_file)
    }

    /// One request; returns the status and body whatever the status.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, "application/json");
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let transport = |e: &dyn std::error::Error| ClientError::Transport {
            url: url.clone(),
            message: error_chain(e),
        };
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| transport(&e))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(&e))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                seconds: self.timeout.as_secs(),
            })?
    }

    /// A JSON request that must succeed; an error status becomes `ClientError::Status` with the
    /// server's message.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, bytes) = self.request(method, path, body).await?;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            let message = value
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(ClientError::Status { status, message });
        }
        value.ok_or_else(|| ClientError::Transport {
            url: format!("{}{path}", self.base),
            message: "the answer is not JSON".into(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.json(Method::POST, path, Some(body)).await
    }
}
