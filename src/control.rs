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
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::approvals::Approver;
use crate::ops::{self, Filter};
use crate::session::Core;

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

/// The socket's caller as another cluster node will name it.
fn issuer(a: &Approver) -> crate::cluster::commands::Issuer {
    crate::cluster::commands::Issuer {
        identity: a.identity().to_string(),
        label: a.label().map(str::to_string),
    }
}

/// A request from the socket: every field that names who acts is replaced by (or, for a label
/// the caller typed, put beside) the peer's identity before the request is handled.
pub async fn handle_local(core: &Arc<Core>, req: Request, who: &LocalUser) -> Response {
    match req {
        Request::Approve {
            id,
            approver,
            reason,
        } => {
            let a = Approver::os_user(&who.name, Some(&approver));
            let kind = crate::cluster::commands::Kind::Approve;
            match crate::cluster::api::decide(core, kind, &id, &issuer(&a), &reason).await {
                Ok(Some(v)) => return Response::ok(v),
                Ok(None) => {}
                Err(e) => return Response::err(e),
            }
            match core.approvals.approve(&id, &a, &reason) {
                Ok(released) => {
                    Response::ok(json!({ "released": released, "approver": a.shown() }))
                }
                Err(e) => Response::err(e),
            }
        }
        Request::Deny {
            id,
            approver,
            reason,
        } => {
            let a = Approver::os_user(&who.name, Some(&approver));
            let kind = crate::cluster::commands::Kind::Deny;
            match crate::cluster::api::decide(core, kind, &id, &issuer(&a), &reason).await {
                Ok(Some(v)) => return Response::ok(v),
                Ok(None) => {}
                Err(e) => return Response::err(e),
            }
            match core.approvals.deny(&id, &a, &reason) {
                Ok(()) => Response::ok(json!({ "denied": true, "approver": a.shown() })),
                Err(e) => Response::err(e),
            }
        }
        Request::Kill { id, reason } => {
            let me = issuer(&Approver::os_user(&who.name, None));
            let id = match crate::cluster::api::kill(core, &id, &me, &reason).await {
                Ok(crate::cluster::api::Routed::Local(id)) => id,
                Ok(crate::cluster::api::Routed::Done(v)) => return Response::ok(v),
                Err(e) => return Response::err(e),
            };
            let reason = format!("{reason} (killed by {})", who.shown(""));
            handle(core, Request::Kill { id, reason }).await
        }
        Request::Purge { session, by } => {
            let by = who.shown(&by);
            handle(core, Request::Purge { session, by }).await
        }
        Request::LegalHold {
            session,
            reason,
            release,
            by,
        } => {
            let by = who.shown(&by);
            handle(
                core,
                Request::LegalHold {
                    session,
                    reason,
                    release,
                    by,
                },
            )
            .await
        }
        Request::Annotate { id, source, text } => {
            let source = format!("{}/{source}", who.shown(""));
            handle(core, Request::Annotate { id, source, text }).await
        }
        Request::Journal { topic, text } => {
            let text = format!("{}: {text}", who.shown(""));
            handle(core, Request::Journal { topic, text }).await
        }
        other => handle(core, other).await,
    }
}

/// Handles one request against the running core. In-process callers only (the HTTP API, which
/// has authenticated its caller and names it in the request); the socket goes through
/// [`handle_local`].
pub async fn handle(core: &Arc<Core>, req: Request) -> Response {
    match req {
        Request::Status => Response::ok(json!({
            "data_dir": core.data_dir(),
            "live_sessions": core.sessions.len(),
            "pending_approvals": core.approvals.list().len(),
            "recorder_failure": core.recorder.failure(),
            "version": env!("CARGO_PKG_VERSION"),
        })),
        Request::SessionsList { filter } => {
            core.store.flush_index();
            let index = core.store.index();
            match ops::list_sessions(index, &filter) {
                Ok(v) => Response::ok(json!(v)),
                Err(e) => Response::err(e),
            }
        }
        Request::SessionsShow { id } => {
            core.store.flush_index();
            let index = core.store.index();
            match ops::find_session(index, &id) {
                Ok(m) => Response::ok(json!(m)),
                Err(e) => Response::err(e),
            }
        }
        Request::Live => Response::ok(crate::cluster::api::live(core).await),
        Request::ApprovalsList => Response::ok(crate::cluster::api::holds(core).await),
        Request::Approve {
            id,
            approver,
            reason,
        } => match core
            .approvals
            .approve(&id, &Approver::token(&approver), &reason)
        {
            Ok(released) => Response::ok(json!({ "released": released })),
            Err(e) => Response::err(e),
        },
        Request::Deny {
            id,
            approver,
            reason,
        } => match core
            .approvals
            .deny(&id, &Approver::token(&approver), &reason)
        {
            Ok(()) => Response::ok(json!({ "denied": true })),
            Err(e) => Response::err(e),
        },
        Request::Kill { id, reason } => {
            let live = core.sessions.list();
            match ops::resolve_prefix(&id, live.iter().map(|s| s.id.as_str())) {
                Ok(chosen) => {
                    core.sessions.kill(&chosen, &reason);
                    Response::ok(json!({ "killed": chosen }))
                }
                Err(ops::OpsError::NoSuchSession(_)) => {
                    Response::err(format!("no live session matches {id:?}"))
                }
                Err(e) => Response::err(e),
            }
        }
        Request::Archive { older_than, to } => {
            let older = match older_than
                .as_deref()
                .map(humantime::parse_duration)
                .transpose()
            {
                Ok(d) => d,
                Err(e) => return Response::err(e),
            };
            match crate::retention::archive(&core.store, older, &to, core.config.retention.online)
                .await
            {
                Ok(r) => Response::ok(json!(r)),
                Err(e) => Response::err(e),
            }
        }
        Request::Purge { session, by } => {
            match crate::retention::purge(
                &core.store,
                session.as_deref(),
                core.config.retention.total,
                &by,
            )
            .await
            {
                Ok(r) => Response::ok(json!(r)),
                Err(e) => Response::err(e),
            }
        }
        Request::LegalHold {
            session,
            reason,
            release,
            by,
        } => {
            match crate::retention::legal_hold(&core.store, &session, &reason, release, &by).await {
                Ok(id) => Response::ok(json!({ "session": id })),
                Err(e) => Response::err(e),
            }
        }
        Request::Journal { topic, text } => {
            // Only audit notes: recovery, policy and reaper notes are proctor's own.
            if topic != "audit" {
                return Response::err(format!(
                    "journal topic {topic:?}: only \"audit\" may be written"
                ));
            }
            match core.recorder.journal(&topic, &text).await {
                Ok(()) => Response::ok(json!({ "recorded": true })),
                Err(e) => Response::err(e),
            }
        }
        Request::Annotate { id, source, text } => match core.sessions.get(&id) {
            None => Response::err(format!("no live session {id:?}")),
            Some(s) => {
                // Annotations bypass the session gate: redact them here.
                let text = core.redactor().text(&s.id, &text).into_owned();
                s.add_reasoning(&text);
                let ev = proctor_gate::Event::Annotation { source, text };
                match core
                    .recorder
                    .record(s.key, crate::clock::now_ns(), &ev)
                    .await
                {
                    Ok(()) => Response::ok(json!({ "recorded": true })),
                    Err(e) => Response::err(e),
                }
            }
        },
    }
}

async fn serve_one(core: Arc<Core>, stream: UnixStream) {
    // Fail closed: a caller the kernel cannot name does not act.
    let who = stream.peer_cred().map(|c| LocalUser::from_uid(c.uid()));
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let resp = match lines.next_line().await {
        Ok(Some(line)) => match (serde_json::from_str::<Request>(&line), &who) {
            (Ok(req), Ok(who)) => handle_local(&core, req, who).await,
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
    core: Arc<Core>,
    path: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => { tokio::spawn(serve_one(core.clone(), s)); }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            },
            _ = crate::serve::stopped(&mut shutdown) => break,
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
