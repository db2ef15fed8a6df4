//! `proctor replay SESSION --against URL`: re-runs a recorded PostgreSQL session's statements,
//! in order, on a sandbox database and compares each result digest with the recorded one —
//! "would the same input give the same effect?".
//!
//! The digest is SHA-256 over DataRow bodies, so it depends on the result format: simple
//! queries (psql) and libpq's extended protocol use text and compare exactly; a client that
//! asked for binary results (e.g. tokio-postgres) is re-run with text results and reported
//! as a format difference rather than a changed result.

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use proctor_gate::{Event, PostgresTarget, Statement, StatementResult, TargetTls};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::Rec;
use proctor_postgres::wire::{ErrorFields, take_typed_frame};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub statement_id: u64,
    pub text: String,
    pub recorded_tag: String,
    pub recorded_digest: String,
    pub replayed_tag: String,
    pub replayed_digest: String,
    pub recorded_error: Option<String>,
    pub replayed_error: Option<String>,
    /// `match`, `mismatch`, `skipped` (not executed in the recording), `format` (binary results).
    pub verdict: String,
}

struct Outcome {
    tag: String,
    digest: [u8; 32],
    error: Option<String>,
}

fn target_from_url(url: &str) -> Result<(PostgresTarget, String, Zeroizing<String>), String> {
    let cfg: tokio_postgres::Config = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(_) => return Err("unix-socket hosts are not supported; use host=127.0.0.1".into()),
        None => "127.0.0.1".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().ok_or("the URL needs a user")?.to_string();
    let password = Zeroizing::new(
        cfg.get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
    );
    let dbname = cfg.get_dbname().unwrap_or(&user).to_string();
    Ok((
        PostgresTarget {
            host,
            port,
            dbname,
            tls: TargetTls::Disable,
            connect_timeout: std::time::Duration::from_secs(10),
            copy_record_limit: proctor_gate::DEFAULT_COPY_RECORD_LIMIT,
        },
        user,
        password,
    ))
}

async fn run_one(
    stream: &mut proctor_postgres::stream::Stream,
    inbuf: &mut BytesMut,
    s: &Statement,
) -> Result<Outcome, String> {
    let mut out = BytesMut::new();
    let io = |e: std::io::Error| e.to_string();
    if s.extended {
        frontend::parse("", &s.text, std::iter::empty(), &mut out).map_err(io)?;
        let formats: Vec<i16> = s.params.iter().map(|p| i16::from(p.binary)).collect();
        frontend::bind(
            "",
            "",
            formats,
            s.params.iter(),
            |p, buf| match &p.value {
                None => Ok(postgres_protocol::IsNull::Yes),
                Some(v) => {
                    buf.extend_from_slice(v);
                    Ok(postgres_protocol::IsNull::No)
                }
            },
            Some(0),
            &mut out,
        )
        .map_err(|e| match e {
            frontend::BindError::Conversion(e) => e.to_string(),
            frontend::BindError::Serialization(e) => e.to_string(),
        })?;
        frontend::execute("", 0, &mut out).map_err(io)?;
        frontend::sync(&mut out);
    } else {
        frontend::query(&s.text, &mut out).map_err(io)?;
    }
    stream.write_all(&out).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut tag = String::new();
    let mut error = None;
    loop {
        let frame = loop {
            match take_typed_frame(inbuf, 1 << 30).map_err(|e| e.to_string())? {
                Some(f) => break f,
                None => {
                    let n = stream.read_buf(inbuf).await.map_err(io)?;
                    if n == 0 {
                        return Err("the sandbox closed the connection".into());
                    }
                }
            }
        };
        match frame.tag {
            b'D' => hasher.update(frame.body()),
            b'C' => {
                tag =
                    String::from_utf8_lossy(frame.body().strip_suffix(&[0]).unwrap_or(frame.body()))
                        .into_owned()
            }
            b'E' => {
                let e = ErrorFields::parse(frame.body());
                error = Some(format!("{} {}", e.code, e.message));
            }
            b'Z' => break,
            _ => {}
        }
    }
    Ok(Outcome {
        tag,
        digest: hasher.finalize().into(),
        error,
    })
}

pub async fn run(url: &str, recs: &[Rec]) -> Result<Vec<Check>, String> {
    let (target, user, password) = target_from_url(url)?;
    let mut conn = proctor_postgres::target::connect(&target, &user, &password, &[])
        .await
        .map_err(|e| format!("cannot log in to the sandbox: {e}"))?;
    let mut inbuf = std::mem::take(&mut conn.leftover);
    let mut results: std::collections::HashMap<u64, StatementResult> = Default::default();
    for r in recs {
        if let Event::StatementResult(res) = &r.event {
            results.insert(res.statement_id, res.clone());
        }
    }
    let mut checks = Vec::new();
    for r in recs {
        let Event::Statement(s) = &r.event else {
            continue;
        };
        let recorded = results.get(&s.id);
        let mut check = Check {
            statement_id: s.id,
            text: s.text.clone(),
            recorded_tag: recorded.map(|x| x.tag.clone()).unwrap_or_default(),
            recorded_digest: recorded.map(|x| hex::encode(x.digest)).unwrap_or_default(),
            replayed_tag: String::new(),
            replayed_digest: String::new(),
            recorded_error: recorded.and_then(|x| {
                x.error
                    .as_ref()
                    .map(|e| format!("{} {}", e.code, e.message))
            }),
            replayed_error: None,
            verdict: String::new(),
        };
        let Some(recorded) = recorded else {
            check.verdict = "skipped".into();
            checks.push(check);
            continue;
        };
        let o = run_one(&mut conn.stream, &mut inbuf, s).await?;
        check.replayed_tag = o.tag;
        check.replayed_digest = hex::encode(o.digest);
        check.replayed_error = o.error;
        let same_outcome = check.replayed_tag == check.recorded_tag
            && check
                .replayed_error
                .as_ref()
                .map(|e| e.split(' ').next().unwrap_or_default().to_string())
                == recorded.error.as_ref().map(|e| e.code.clone());
        check.verdict = if same_outcome && o.digest == recorded.digest {
            "match"
        } else if same_outcome
            && s.extended
            && recorded.rows > 0
            && recorded
                .sample_rows
                .iter()
                .flatten()
                .flatten()
                .any(|c| c.starts_with("\\x"))
        {
            "format"
        } else {
            "mismatch"
        }
        .into();
        checks.push(check);
    }
    Ok(checks)
}
