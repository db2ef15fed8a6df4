//! Verification and export (auditor). Both read the segment files the recorder is appending
//! to, so verification runs in `live` mode (an append in flight at the very end is not
//! tampering), and exports stream instead of buffering a whole session in memory.

use std::io::Write;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::auth::{Principal, Role, audit};
use super::{ApiError, ApiPath, ApiQuery, ApiState, blocking};
use crate::ops::{self, ExportFormat};

fn verify_json(report: crate::recorder::verify::Report, key: String) -> Value {
    json!({ "ok": report.ok(), "verdict": report.verdict(), "key": key, "report": report })
}

pub async fn verify_session(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(&[Role::Auditor], "verify recordings")?;
    let meta = super::sessions::find(&st, id).await?;
    audit(&st, &p, "verified", &meta.id).await?;
    let data = st.core.data_dir();
    let (report, key) =
        blocking(move || Ok(ops::verify(&data, Some(&meta.id), None, true)?)).await?;
    Ok(Json(verify_json(report, key)))
}

pub async fn verify_store(
    State(st): State<ApiState>,
    p: Principal,
) -> Result<Json<Value>, ApiError> {
    p.require(&[Role::Auditor], "verify recordings")?;
    audit(&st, &p, "verified the whole store, every", "in it").await?;
    let data = st.core.data_dir();
    let (report, key) = blocking(move || Ok(ops::verify(&data, None, None, true)?)).await?;
    Ok(Json(verify_json(report, key)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub format: Option<String>,
}

/// Hands written bytes to the response body in chunks; a client that went away stops the
/// export with a broken pipe instead of letting it run to the end.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

pub async fn export(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    p.require(&[Role::Auditor], "export recordings")?;
    let format = ExportFormat::parse(q.format.as_deref().unwrap_or("jsonl"))?;
    let meta = super::sessions::find(&st, id).await?;
    if format == ExportFormat::Bundle && !meta.sealed {
        return Err(ApiError::Conflict(format!(
            "session {} is still open; a bundle needs a sealed session",
            meta.id
        )));
    }
    let (name, ext, content_type) = match format {
        ExportFormat::Jsonl => ("jsonl", "jsonl", "application/x-ndjson"),
        ExportFormat::Asciicast => ("asciicast", "cast", "application/x-asciicast"),
        ExportFormat::Bundle => ("bundle", "bundle", "application/octet-stream"),
    };
    audit(&st, &p, &format!("exported ({name})"), &meta.id).await?;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let data = st.core.data_dir();
    let filename = format!("{}.{ext}", meta.id);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = ops::export(&data, &meta, format, &mut w).and_then(|()| Ok(w.flush()?));
        if let Err(e) = result {
            tracing::warn!(session = %meta.id, error = %e, "export failed mid-stream");
            // An error after the headers went out can only cut the body short; the client
            // sees a truncated transfer rather than a silently incomplete file.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
