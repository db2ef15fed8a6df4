//! `proctor serve`: open the store (recovering from any crash), start the listeners, the control
//! socket and the housekeeping tasks, and shut down cleanly on SIGINT/SIGTERM.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use proctor_gate::Protocol;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::Config;
use crate::credentials::pg_roles::Retry;
use crate::credentials::ssh_ca::SshCa;
use crate::listeners;
use crate::policy::Policy;
use crate::recorder::{Store, WriterOptions};
use crate::service::Service;
use crate::session::authority::admin_target;
use crate::session::{Core, CoreAuthority};

pub use crate::listeners::Started;

pub struct Server {
    pub core: Arc<Core>,
    pub started: Started,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    unauth: Arc<crate::session::unauth::Unauthenticated>,
}

pub fn writer_options(config: &Config) -> WriterOptions {
    WriterOptions {
        checkpoint_every_events: config.recorder.checkpoint_every_events.max(1),
        checkpoint_every: config.recorder.checkpoint_every,
        // Never zero: a zero interval would sign at every batch.
        store_checkpoint_every: config
            .recorder
            .store_checkpoint_every
            .max(std::time::Duration::from_millis(1)),
        ..WriterOptions::default()
    }
}

/// Opens everything and starts serving; returns once the listeners are bound.
pub async fn start(config: Config) -> Result<Server> {
    let config = Arc::new(config);
    let data = config.data_dir.clone();
    let mut store = Store::open(&data, writer_options(&config))
        .with_context(|| format!("opening the store in {}", data.display()))?;
    store.default_retention = (config.retention.online, config.retention.total);
    store
        .finish_recovery()
        .await
        .context("recovering the store after an unclean stop")?;
    for n in &store.recovery.notes {
        tracing::warn!("recovery: {n}");
    }
    if !store.recovery.interrupted_sessions.is_empty() {
        tracing::warn!(
            count = store.recovery.interrupted_sessions.len(),
            "sealed sessions left open by an unclean stop as interrupted"
        );
    }
    let policy = Policy::load(&config.policies).context("loading policies")?;
    tracing::info!(
        rules = policy.rules.len(),
        files = policy.files.len(),
        "policies loaded"
    );
    let ssh_ca = SshCa::load_or_init(&data).context("loading the SSH user CA")?;
    let core = Arc::new(Core::new(config.clone(), Arc::new(store), policy, ssh_ca));
    let cluster = match &config.cluster {
        Some(c) => Some(
            crate::cluster::Cluster::connect(c, &data)
                .await
                .context("[cluster] control_plane")?,
        ),
        None => None,
    };
    let authority = Arc::new(CoreAuthority::new(core.clone()));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    // The one application layer every door calls: the API, the control socket, and the
    // commands other cluster nodes send.
    let peers = cluster.as_ref().map(|c| {
        Arc::new(crate::cluster::peers::ClusterPeers::new(c.clone()))
            as Arc<dyn crate::service::Peers>
    });
    let service = Service::new(core.clone(), peers);
    if let Some(c) = cluster {
        tracing::info!(node = %c.node, "cluster mode: live state and commands on the control plane");
        tasks.extend(c.spawn(service.clone(), shutdown_rx.clone()));
        let _ = core.cluster.set(c);
    }
    reap_roles(&core, true).await;
    tasks.push(tokio::spawn(housekeeping(
        core.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(reload_on_sighup(
        core.clone(),
        shutdown_rx.clone(),
    )));
    let sock = crate::control::socket_path(&data);
    let (s, rx) = (service.clone(), shutdown_rx.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = crate::control::serve(s, sock, rx).await {
            tracing::error!(error = %e, "control socket failed");
        }
    }));
    // Timestamps of tree heads from outside the host; its own task, nobody waits for it.
    tasks.extend(
        crate::recorder::timestamp::client::start(
            data.clone(),
            config.ledger.timestamp.clone(),
            shutdown_rx.clone(),
        )
        .map_err(|e| anyhow::anyhow!("[ledger.timestamp]: {e}"))?,
    );
    // Evidence to write-once object storage; its own task, recording never waits for it.
    if let Some(os) = &config.object_store {
        tasks.push(
            crate::evidence_store::start(&core, os, shutdown_rx.clone())
                .map_err(|e| anyhow::anyhow!("[object_store]: {e}"))?,
        );
    }
    let unauth = authority.unauth.clone();
    let started = listeners::start(
        &service,
        authority,
        &config,
        shutdown_rx.clone(),
        &mut tasks,
    )
    .await?;
    Ok(Server {
        core,
        started,
        shutdown,
        tasks,
        unauth,
    })
}

impl Server {
    /// Stops accepting, ends live sessions (`interrupted`), and closes the store.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for s in self.core.sessions.all() {
            s.kill.send_replace(Some("proctor is shutting down".into()));
        }
        // Protocols end their sessions when they see the kill; give them a moment.
        for _ in 0..100 {
            if self.core.sessions.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The last window of unauthenticated refusals, before the tasks that count them go.
        crate::session::unauth::write_summary(&self.core, &self.unauth).await;
        for t in self.tasks {
            t.abort();
        }
        // Everything recorded is durable and signed, the index persisted, the lock released,
        // even if some task still holds the core.
        self.core.store.shutdown().await;
        tracing::info!("proctor stopped");
    }
}

/// Drops leftover `proctor_` roles on every PostgreSQL target.
async fn reap_roles(core: &Arc<Core>, at_startup: bool) {
    let live: HashSet<String> = core
        .sessions
        .all()
        .iter()
        .filter(|s| s.protocol == Protocol::Postgres)
        .map(|s| crate::credentials::pg_roles::role_name(&s.agent, &s.id))
        .collect();
    for t in &core.config.targets {
        if t.protocol() != Some(Protocol::Postgres) {
            continue;
        }
        let admin = match admin_target(t) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(target = %t.name, error = %e, "cannot reap roles");
                continue;
            }
        };
        match core.pg_roles.reap(&admin, &live, at_startup).await {
            Ok(results) => {
                let dropped: Vec<&str> = results
                    .iter()
                    .filter_map(|r| match r {
                        Retry::Dropped { role, .. } => Some(role.as_str()),
                        Retry::Failed { .. } => None,
                    })
                    .collect();
                if !dropped.is_empty() {
                    let text = format!(
                        "target {}: dropped leftover roles {}",
                        t.name,
                        dropped.join(", ")
                    );
                    tracing::warn!("{}", proctor_gate::inert::Line(&text));
                    let _ = core.recorder.journal("reaper", &text).await;
                }
                journal_failed_drops(core, &results).await;
            }
            Err(e) => tracing::warn!(target = %t.name, error = %e, "role reaper failed"),
        }
    }
}

/// Drops the roles of ended sessions whose drop failed at the time (target unreachable, a
/// lock in the way); every attempt, failed or not, is a journal note.
async fn retry_revocations(core: &Arc<Core>) {
    let results = core.pg_roles.retry_pending().await;
    for r in &results {
        if let Retry::Dropped { role, detail } = r {
            let text = format!("dropped role {role} of an ended session on retry: {detail}");
            tracing::info!("{}", proctor_gate::inert::Line(&text));
            let _ = core.recorder.journal("reaper", &text).await;
        }
    }
    journal_failed_drops(core, &results).await;
}

async fn journal_failed_drops(core: &Arc<Core>, results: &[Retry]) {
    for r in results {
        if let Retry::Failed {
            role,
            attempts,
            error,
            next_in,
        } = r
        {
            let text = format!(
                "could not drop role {role} (attempt {attempts}): {error}; retrying in {}s",
                next_in.as_secs()
            );
            tracing::warn!("{}", proctor_gate::inert::Line(&text));
            let _ = core.recorder.journal("reaper", &text).await;
        }
    }
}

async fn housekeeping(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(Duration::from_millis(500));
    let mut reap = tokio::time::interval(Duration::from_secs(60));
    reap.tick().await;
    let mut retry = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = flush.tick() => core.store.flush_index(),
            _ = reap.tick() => reap_roles(&core, false).await,
            _ = retry.tick(), if core.pg_roles.pending() > 0 => retry_revocations(&core).await,
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        }
    }
}

async fn reload_on_sighup(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match Policy::load(&core.config.policies) {
                Ok(p) => {
                    tracing::info!(rules = p.rules.len(), "policies reloaded");
                    let _ = core.recorder.journal("policy", &format!("reloaded {} rules from {}", p.rules.len(), p.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))).await;
                    core.set_policy(p);
                }
                Err(e) => tracing::error!(error = %e, "policy reload failed; keeping the previous rules"),
            },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        }
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config_path: PathBuf) -> Result<()> {
    let config = Config::load(&config_path)?;
    let server = start(config).await?;
    print_started(&server.started);
    wait_for_termination().await;
    server.stop().await;
    Ok(())
}

pub fn print_started(s: &Started) {
    if let Some(a) = s.postgres {
        tracing::info!("PostgreSQL listener on {a}");
    }
    if let Some(a) = s.ssh {
        tracing::info!("SSH listener on {a}");
    }
    if let Some(a) = s.api {
        tracing::info!("HTTP API on http://{a}");
    }
}

pub async fn wait_for_termination() {
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
    tracing::info!("shutting down");
}

/// Kept for callers in modules this layer does not own (the timestamp client).
pub use crate::shutdown::stopped;
