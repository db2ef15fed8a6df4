//! `proctor approvals list|approve|deny` and `proctor kill`: these act on the running proctor.

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;

use super::{RemoteArgs, StoreArgs, is_running};
use crate::api::client::{ApiClient, segment};
use crate::approvals::PendingView;
use crate::control::{self, Request};
use crate::ops::{self, Candidate};
use proctor_gate::inert::{line, text};

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Held actions, grouped (look-alike holds of one agent together, with their count), the
    /// most dangerous groups first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        json: bool,
    },
    /// One held action in full.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        id: String,
        #[arg(long)]
        json: bool,
        /// Open the sealed values of the held action with the auditor's private key (`--key`).
        /// The reveal is recorded in the store journal (topic `audit`) before anything is shown.
        #[arg(long, requires = "key")]
        reveal: bool,
        /// The auditor private key file (`proctor keygen` / `generate_key_files`).
        #[arg(long)]
        key: Option<std::path::PathBuf>,
    },
    /// Release a held action.
    Approve {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// A label recorded beside you; the approver counted is the local user the control
        /// socket sees (`os:NAME`), whatever this says.
        #[arg(long = "as")]
        approver: Option<String>,
    },
    /// Refuse a held action; the agent sees the reason.
    Deny {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        id: String,
        #[arg(long)]
        reason: String,
        /// A label recorded beside you (see `approve --as`).
        #[arg(long = "as")]
        approver: Option<String>,
    },
}

fn approver(a: Option<String>) -> String {
    a.or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "operator".into())
}

async fn call(store: &StoreArgs, req: Request) -> Result<serde_json::Value> {
    let data = store.data_dir()?;
    if !is_running(&data) {
        bail!(
            "no proctor is running on {} (approvals and kills act on live sessions)",
            data.display()
        );
    }
    control::call(&data, &req).await.map_err(|e| anyhow!(e))
}

/// The id a decision names (the full id, where the caller gave a prefix).
fn decided<'a>(v: &'a serde_json::Value, asked: &'a str) -> &'a str {
    v.get("id").and_then(|i| i.as_str()).unwrap_or(asked)
}

/// With --server the approver is the token's name, so `--as` would be a lie in the evidence.
fn remote_decider(remote: &RemoteArgs, a: &Option<String>) -> Result<Option<ApiClient>> {
    let client = remote.client()?;
    if client.is_some() && a.is_some() {
        bail!("--as does not apply with --server: the approver recorded is the API token's name");
    }
    Ok(client)
}

pub async fn run(cmd: ApprovalsCommand) -> Result<i32> {
    match cmd {
        ApprovalsCommand::List {
            store,
            remote,
            json,
        } => {
            let v = pending(&store, &remote).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            let nodes = node_of(&v);
            let list: Vec<PendingView> = serde_json::from_value(v)?;
            if list.is_empty() {
                println!("no held actions");
            }
            print!("{}", render_queue(&list, &nodes));
            Ok(0)
        }
        ApprovalsCommand::Show {
            store,
            remote,
            id,
            json,
            reveal,
            key,
        } => {
            let v = pending(&store, &remote).await?;
            let list: Vec<PendingView> = serde_json::from_value(v)?;
            // A full id or a prefix only one hold has, as `approve` and `deny` take.
            let candidates = list.iter().map(|p| Candidate::new(&p.id, &p.agent));
            let chosen = match ops::resolve_prefix(&id, "held actions", candidates) {
                Ok(c) => c.id,
                Err(ops::OpsError::NoSuchSession(_)) => bail!(
                    "no pending approval {} (it may have been decided, timed out or cancelled)",
                    line(&id)
                ),
                Err(e) => bail!("{e}"),
            };
            let Some(mut p) = list.into_iter().find(|p| p.id == chosen) else {
                bail!("no pending approval {}", line(&chosen));
            };
            if reveal && let Some(key) = key {
                p = reveal_sealed(&store, &remote, p, &key).await?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", render_pending(&p));
            }
            Ok(0)
        }
        ApprovalsCommand::Approve {
            store,
            remote,
            id,
            reason,
            approver: a,
        } => {
            let v = match remote_decider(&remote, &a)? {
                Some(c) => {
                    c.post(
                        &format!("/api/approvals/{}/approve", segment(&id)),
                        &serde_json::json!({ "reason": reason }),
                    )
                    .await?
                }
                None => {
                    call(
                        &store,
                        Request::Approve {
                            id: id.clone(),
                            approver: approver(a),
                            reason,
                        },
                    )
                    .await?
                }
            };
            // The hold's full id, as the service resolved a prefix.
            let id = decided(&v, &id);
            if v.get("released").and_then(|r| r.as_bool()) == Some(true) {
                println!("approved {}: the action proceeds", line(id));
            } else {
                println!(
                    "approval of {} recorded; more distinct approvers are needed",
                    line(id)
                );
            }
            Ok(0)
        }
        ApprovalsCommand::Deny {
            store,
            remote,
            id,
            reason,
            approver: a,
        } => {
            let v = match remote_decider(&remote, &a)? {
                Some(c) => {
                    c.post(
                        &format!("/api/approvals/{}/deny", segment(&id)),
                        &serde_json::json!({ "reason": reason }),
                    )
                    .await?
                }
                None => {
                    call(
                        &store,
                        Request::Deny {
                            id: id.clone(),
                            approver: approver(a),
                            reason,
                        },
                    )
                    .await?
                }
            };
            println!("denied {}", line(decided(&v, &id)));
            Ok(0)
        }
    }
}

/// One held action for a person's terminal. Every field an agent or a target controls is made
/// inert (a repaint, a clipboard write or a bidi override shows as tokens), and nothing is
/// shortened: the approver reads all of what will run.
/// Records the reveal (the API journals it as the token's name, the control socket as the
/// local user), then opens the markers locally: the private key never leaves this machine.
async fn reveal_sealed(
    store: &StoreArgs,
    remote: &RemoteArgs,
    p: PendingView,
    key: &std::path::Path,
) -> Result<PendingView> {
    let opener = crate::redact::seal::Opener::load(key)?;
    let public = opener.sealer().public_hex();
    let mut p = match remote.client()? {
        Some(c) => {
            let v = c
                .post(
                    &format!("/api/approvals/{}/reveal", segment(&p.id)),
                    &serde_json::json!({ "key": public }),
                )
                .await
                .map_err(unrecorded)?;
            serde_json::from_value(v)?
        }
        None => {
            let note = crate::approval_queue::reveal_note("approver", &p, &public);
            call(
                store,
                Request::Journal {
                    topic: "audit".into(),
                    text: note,
                },
            )
            .await
            .map_err(unrecorded)?;
            p
        }
    };
    let (opened, failed) = crate::approval_queue::open_sealed(&mut p, &opener);
    eprintln!(
        "revealed {opened} sealed values; {failed} did not open with this key; the reveal is recorded in the store journal"
    );
    Ok(p)
}

fn unrecorded(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("could not record the reveal, so nothing is revealed: {e}")
}

/// The queue (already in order, see `approval_queue::order`): a header per group with its
/// count, severity and shared text, then every hold of it in full.
/// Cluster mode: hold id -> where it is held, as the list names it.
fn node_of(v: &serde_json::Value) -> std::collections::HashMap<String, String> {
    let field =
        |h: &serde_json::Value, k: &str| h.get(k).and_then(|s| s.as_str()).map(str::to_string);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| {
            let node = field(h, "node")?;
            let stale = h.get("node_heartbeating").and_then(|b| b.as_bool()) == Some(false);
            let adv = field(h, "node_advertise").unwrap_or_default();
            let shown = format!(
                "{node} ({adv}){}",
                if stale { ", not heartbeating" } else { "" }
            );
            Some((field(h, "id")?, shown))
        })
        .collect()
}

fn render_queue(list: &[PendingView], nodes: &std::collections::HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut last_group = None;
    for p in list {
        if last_group != Some(&p.group.id) {
            last_group = Some(&p.group.id);
            out.push_str(&format!(
                "== {} held · {} · agent {} · {}: {}\n",
                p.group.count,
                p.severity.as_str(),
                line(&p.agent),
                line(&p.kind),
                line(&p.group.normalised),
            ));
        }
        out.push_str(&render_pending(p));
        if let Some(n) = nodes.get(&p.id) {
            out.push_str(&format!("    held on node {}\n", line(n)));
        }
    }
    out
}

async fn pending(store: &StoreArgs, remote: &RemoteArgs) -> Result<serde_json::Value> {
    Ok(match remote.client()? {
        Some(c) => c.get("/api/approvals").await?,
        None => call(store, Request::ApprovalsList).await?,
    })
}

fn render_pending(p: &PendingView) -> String {
    let tables: Vec<_> = p.tables.iter().map(|t| line(t)).collect();
    let mut out = format!(
        "{}  [{}]  session {}  agent {}  target {} ({}, {})\n    {} [{}{}]:\n{}\n    held by rule {}: {}\n",
        line(&p.id),
        p.severity.as_str(),
        line(&p.session_id),
        line(&p.agent),
        line(&p.target),
        line(&p.protocol),
        line(&p.privilege),
        line(&p.kind),
        line(&p.class),
        if tables.is_empty() {
            String::new()
        } else {
            format!(" on {}", tables.join(", "))
        },
        indent(&text(&p.detail), "      "),
        line(&p.rule),
        line(&p.reason),
    );
    if !p.settings.is_empty() {
        out.push_str("    session settings when held:\n");
        for s in &p.settings {
            out.push_str(&format!(
                "      {} = {}  ({})\n",
                line(&s.name),
                line(&s.value),
                line(&s.note)
            ));
        }
    }
    for r in &p.reasoning {
        out.push_str(&format!(
            "    agent's reasoning:\n{}\n",
            indent(&text(r), "      ")
        ));
    }
    out
}

/// Indents every line, so a multi-line statement cannot pass for the next field.
fn indent(s: &str, by: &str) -> String {
    s.split('\n')
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn kill(
    store: StoreArgs,
    remote: RemoteArgs,
    session: &str,
    reason: &str,
) -> Result<i32> {
    let v = match remote.client()? {
        Some(c) => {
            c.post(
                &format!("/api/sessions/{}/kill", segment(session)),
                &serde_json::json!({ "reason": reason }),
            )
            .await?
        }
        None => {
            call(
                &store,
                Request::Kill {
                    id: session.to_string(),
                    reason: reason.to_string(),
                },
            )
            .await?
        }
    };
    println!(
        "killed {}",
        line(v.get("killed").and_then(|s| s.as_str()).unwrap_or(session))
    );
    Ok(0)
}
