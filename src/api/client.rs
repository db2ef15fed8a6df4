//! The proctor API client of the CLI's `--server` mode, over the shared outbound client
//! (`crate::http_client`).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use serde_json::Value;

pub use crate::http_client::{ClientError, HttpClient, error_chain, http_client};

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
