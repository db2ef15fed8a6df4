//! The local control socket (`DATA/control.sock`, mode 0600): lets the CLI work while a proctor
//! holds the store's lock. One JSON request per connection, one JSON response. Recordings are
//! read by the CLI from the files themselves; the socket only answers what needs the running
//! process (index, live sessions, approvals, kill).
//!
//! Whoever acts through the socket is the local user the kernel names in the connection's peer
//! credentials (`SO_PEERCRED`), not what the request says: `--as` is recorded as a label beside
//! that identity, and approvals count identities.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::approvals::Approver;
use crate::ops::Filter;
use crate::service::{Actor, Service};

pub fn socket_path(data: &Path) -> PathBuf {
    data.join("control.sock")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    SessionsList {
        filter: Filter,
    },
    SessionsShow {
        id: String,
    },
    Live,
    ApprovalsList,
    Approve {
        id: String,
        approver: String,
        reason: String,
    },
    Deny {
        id: String,
        approver: String,
        reason: String,
    },
    Kill {
        id: String,
        reason: String,
    },
    Archive {
        older_than: Option<String>,
        to: std::path::PathBuf,
    },
    Purge {
        session: Option<String>,
        by: String,
    },
    LegalHold {
        session: String,
        reason: String,
        release: bool,
        by: String,
    },
    /// Records an annotation (agent reasoning) in a live session.
    Annotate {
        id: String,
        source: String,
        text: String,
    },
    /// Records an audit note in the store journal (e.g. an auditor revealed sealed fields).
    Journal {
        topic: String,
        text: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub error: Option<String>,
}

impl Response {
    fn ok(result: Value) -> Self {
        Response {
            ok: true,
            result,
            error: None,
        }
    }

    fn err(e: impl ToString) -> Self {
        Response {
            ok: false,
            result: Value::Null,
            error: Some(e.to_string()),
        }
    }
}

/// The local user at the other end of the socket, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub uid: u32,
    pub name: String,
}

impl LocalUser {
    pub fn from_uid(uid: u32) -> LocalUser {
        LocalUser {
            uid,
            name: user_name(uid).unwrap_or_else(|| format!("uid{uid}")),
        }
    }

    /// The identity as recorded, with the caller's own label (if any) beside it.
    fn shown(&self, label: &str) -> String {
        Approver::os_user(&self.name, Some(label)).shown()
    }
}

/// The passwd name of `uid`, if it has one.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and `buf` outlives the use of `pwd`'s fields.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points at a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// Answers with `r`'s value, or its error as text (the CLI prints it).
fn answer<T: Serialize, E: std::fmt::Display>(r: Result<T, E>) -> Response {
    match r.map(|v| serde_json::to_value(v)) {
        Ok(Ok(v)) => Response::ok(v),
        Ok(Err(e)) => Response::err(format!("the answer could not be encoded: {e}")),
        Err(e) => Response::err(e),
    }
}

/// Handles one request from the socket. Whoever acts is `who`, the peer the kernel named:
/// every field of the request that names who acts is replaced by that identity or, for a label
/// the caller typed, put beside it.
pub async fn handle(service: &Service, req: Request, who: &LocalUser) -> Response {
    let core = service.core();
    let me = Actor::Local {
        user: who.name.clone(),
        label: None,
    };
    let labelled = |label: String| Actor::Local {
        user: who.name.clone(),
        label: Some(label),
    };
    match req {
        Request::Status => Response::ok(json!({
            "data_dir": core.data_dir(),
            "live_sessions": core.sessions.len(),
            "pending_approvals": core.approvals.list().len(),
            "recorder_failure": core.recorder.failure(),
            "version": env!("CARGO_PKG_VERSION"),
        })),
        Request::SessionsList { filter } => answer(service.sessions(filter).await),
        Request::SessionsShow { id } => answer(service.session(&id).await),
        Request::Live => answer(service.live(&me).await),
        Request::ApprovalsList => answer(service.holds(&me).await),
        Request::Approve {
            id,
            approver,
            reason,
        } => answer(service.approve(&labelled(approver), &id, &reason).await),
        Request::Deny {
            id,
            approver,
            reason,
        } => answer(service.deny(&labelled(approver), &id, &reason).await),
        Request::Kill { id, reason } => answer(service.kill(&me, &id, &reason).await),
        Request::Archive { older_than, to } => {
            let older = match older_than
                .as_deref()
                .map(humantime::parse_duration)
                .transpose()
            {
                Ok(d) => d,
                Err(e) => return Response::err(e),
            };
            answer(
                crate::retention::archive(&core.store, older, &to, core.config.retention.online)
                    .await,
            )
        }
        Request::Purge { session, by } => answer(
            crate::retention::purge(
                &core.store,
                session.as_deref(),
                core.config.retention.total,
                &who.shown(&by),
            )
            .await,
        ),
        Request::LegalHold {
            session,
            reason,
            release,
            by,
        } => answer(
            crate::retention::legal_hold(&core.store, &session, &reason, release, &who.shown(&by))
                .await
                .map(|id| json!({ "session": id })),
        ),
        Request::Journal { topic, text } => {
            // Only audit notes: recovery, policy and reaper notes are proctor's own.
            if topic != "audit" {
                return Response::err(format!(
                    "journal topic {topic:?}: only \"audit\" may be written"
                ));
            }
            let text = format!("{}: {text}", who.shown(""));
            answer(
                core.recorder
                    .journal(&topic, &text)
                    .await
                    .map(|()| json!({ "recorded": true })),
            )
        }
        Request::Annotate { id, source, text } => {
            let source = format!("{}/{source}", who.shown(""));
            answer(
                service
                    .annotate(&id, &source, &text)
                    .await
                    .map(|()| json!({ "recorded": true })),
            )
        }
    }
}

async fn serve_one(service: Service, stream: UnixStream) {
    // Fail closed: a caller the kernel cannot name does not act.
    let who = stream.peer_cred().map(|c| LocalUser::from_uid(c.uid()));
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let resp = match lines.next_line().await {
        Ok(Some(line)) => match (serde_json::from_str::<Request>(&line), &who) {
            (Ok(req), Ok(who)) => handle(&service, req, who).await,
            (Ok(_), Err(e)) => Response::err(format!("cannot tell who is calling: {e}")),
            (Err(e), _) => Response::err(format!("bad request: {e}")),
        },
        Ok(None) => return,
        Err(e) => Response::err(e),
    };
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    let _ = w.write_all(&out).await;
}

/// Binds the socket (replacing a stale one) with owner-only permissions and serves it.
pub async fn serve(
    service: Service,
    path: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => { tokio::spawn(serve_one(service.clone(), s)); }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Sends one request to a running proctor.
pub async fn call(data: &Path, req: &Request) -> Result<Value, String> {
    let path = socket_path(data);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        format!(
            "cannot reach the running proctor at {}: {e}",
            path.display()
        )
    })?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    w.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(r).lines();
    let resp = lines
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the running proctor closed the control connection")?;
    let resp: Response = serde_json::from_str(&resp).map_err(|e| e.to_string())?;
    if resp.ok {
        Ok(resp.result)
    } else {
        Err(resp.error.unwrap_or_else(|| "failed".into()))
    }
}
