//! `GET /metrics`: proctor's health as evidence keeper, in the Prometheus text exposition
//! format (version 0.0.4), for operators and auditors (a scraper holds a bearer token of
//! either role). Nothing here names a session or an agent: the figures are the timestamping
//! lag per TSA, the ledger's size, the unsigned window and the recorder's queue.

use std::fmt::Write as _;
use std::path::Path;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::recorder::Recorder;
use crate::recorder::timestamp;

/// The content type Prometheus scrapers expect for the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn serve(State(st): State<ApiState>) -> Result<Response, ApiError> {
    let data = st.core.data_dir();
    let tsas: Vec<String> = st
        .core
        .config
        .ledger
        .timestamp
        .tsa
        .iter()
        .map(|t| t.url.clone())
        .collect();
    let recorder = st.core.recorder.clone();
    let text = super::blocking(move || {
        render(&data, &tsas, &recorder, crate::clock::now_ns())
            .map_err(|e| ApiError::Internal(format!("reading the ledger for metrics: {e}")))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// A label value as the exposition format quotes it (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

/// The exposition text at `now_ns`.
pub fn render(
    data: &Path,
    tsas: &[String],
    recorder: &Recorder,
    now_ns: i64,
) -> std::io::Result<String> {
    let mut o = Out(String::new());
    let (leaves, head) = crate::recorder::consistency::read_ledger(data)?;
    o.one(
        "proctor_ledger_leaves",
        "gauge",
        "Leaves in the store's ledger.",
        leaves.len() as f64,
    );
    o.one(
        "proctor_ledger_tree_size",
        "gauge",
        "Size of the newest signed tree head (0: none yet).",
        head.as_ref().map_or(0.0, |h| h.size as f64),
    );
    if let Some(h) = &head {
        o.one(
            "proctor_ledger_tree_head_timestamp_seconds",
            "gauge",
            "When the newest tree head was signed (Unix time).",
            seconds(h.ts_ns),
        );
    }

    let lags = timestamp::check::lag(data, tsas, now_ns)?;
    let status = timestamp::read_status(data);
    if !lags.is_empty() {
        o.family(
            "proctor_tsa_untimestamped_age_seconds",
            "gauge",
            "Per TSA: age of the oldest tree head it has not timestamped (0: every head has a token), the lag `proctor ledger head` shows.",
        );
        for l in &lags {
            let tsa = format!("tsa=\"{}\"", label(&l.url));
            o.sample("proctor_tsa_untimestamped_age_seconds", &tsa, l.lag_seconds);
        }
        o.family(
            "proctor_tsa_timestamped_tree_size",
            "gauge",
            "Per TSA: size of the newest tree head with a stored token.",
        );
        for l in &lags {
            let tsa = format!("tsa=\"{}\"", label(&l.url));
            o.sample(
                "proctor_tsa_timestamped_tree_size",
                &tsa,
                l.timestamped_size as f64,
            );
        }
        o.family(
            "proctor_tsa_failures",
            "gauge",
            "Per TSA: failed requests since its last success.",
        );
        for l in &lags {
            let tsa = format!("tsa=\"{}\"", label(&l.url));
            o.sample("proctor_tsa_failures", &tsa, f64::from(l.failures));
        }
        o.family(
            "proctor_tsa_last_success_timestamp_seconds",
            "gauge",
            "Per TSA: when it last returned a token (Unix time); absent before the first.",
        );
        for s in &status {
            if let Some(t) = s.last_success_ns {
                let tsa = format!("tsa=\"{}\"", label(&s.url));
                o.sample(
                    "proctor_tsa_last_success_timestamp_seconds",
                    &tsa,
                    seconds(t),
                );
            }
        }
    }

    let gauges = recorder.gauges();
    o.one(
        "proctor_unsigned_window_seconds",
        "gauge",
        "Age of the oldest record no store checkpoint has signed yet (0: everything written is signed); bounded by [recorder] store_checkpoint_every.",
        gauges
            .unsigned_since_ns()
            .map_or(0.0, |t| seconds(now_ns.saturating_sub(t)).max(0.0)),
    );
    if let Some(t) = gauges.last_store_checkpoint_ns() {
        o.one(
            "proctor_store_checkpoint_last_timestamp_seconds",
            "gauge",
            "When the recorder last signed a store checkpoint (Unix time); absent before the first since start.",
            seconds(t),
        );
    }
    o.one(
        "proctor_recorder_durable_records_total",
        "counter",
        "Records made durable (fdatasync done) since proctor started.",
        gauges.durable_records() as f64,
    );
    o.one(
        "proctor_recorder_queued_bytes",
        "gauge",
        "Bytes of events queued for the recorder and not yet durable.",
        recorder.queued_bytes() as f64,
    );
    o.one(
        "proctor_recorder_failed",
        "gauge",
        "1 when the recorder has failed (sessions are refused), else 0.",
        if recorder.failure().is_some() {
            1.0
        } else {
            0.0
        },
    );
    Ok(o.0)
}
