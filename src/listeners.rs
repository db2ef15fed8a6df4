//! Binds the protocol listeners named in the config and hands them to the protocol crates.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

/// The agent-facing TLS configuration and, when the certificate allows it, the
/// `tls-server-end-point` binding data for SCRAM-SHA-256-PLUS.
type PostgresTls = (Arc<rustls::ServerConfig>, Option<Arc<[u8]>>);

fn postgres_tls(config: &Config) -> Result<Option<PostgresTls>> {
    let (Some(cert), Some(key)) = (&config.postgres.tls_cert, &config.postgres.tls_key) else {
        if config.postgres.tls_cert.is_some() != config.postgres.tls_key.is_some() {
            anyhow::bail!("postgres.tls_cert and postgres.tls_key must be set together");
        }
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("postgres.tls_cert: cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "postgres.tls_cert: {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    let binding = match certs.first() {
        Some(leaf) => match proctor_postgres::channel_binding::tls_server_end_point(leaf) {
            Ok(b) => Some(Arc::from(b)),
            Err(e) => {
                // Clients that require channel binding will refuse; everyone else is served.
                tracing::warn!(error = %e, cert = %cert.display(), "postgres: SCRAM-SHA-256-PLUS not offered");
                None
            }
        },
        None => anyhow::bail!("postgres.tls_cert: {} holds no certificate", cert.display()),
    };
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "postgres.tls_key: cannot read a PEM private key from {}",
            key.display()
        )
    })?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("postgres.tls_cert/tls_key: the key does not match the certificate")?;
    tls.alpn_protocols = vec![proctor_postgres::ALPN_PROTOCOL.to_vec()];
    Ok(Some((Arc::new(tls), binding)))
}

/// What a started server tells its caller (dev mode prints and writes these).
#[derive(Debug, Clone)]
pub struct Started {
    pub postgres: Option<std::net::SocketAddr>,
    pub ssh: Option<std::net::SocketAddr>,
    pub api: Option<std::net::SocketAddr>,
}

pub async fn start(
    service: &crate::service::Service,
    core_authority: Arc<crate::session::CoreAuthority>,
    config: &Config,
    shutdown: watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Started> {
    let core = service.core();
    tasks.push(tokio::spawn(crate::session::unauth::run_summaries(
        core.clone(),
        core_authority.unauth.clone(),
        shutdown.clone(),
    )));
    let authority: Arc<dyn proctor_gate::Authority> = core_authority;
    let mut started = Started {
        postgres: None,
        ssh: None,
        api: None,
    };
    if let Some(addr) = config.listen.postgres {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen.postgres: cannot listen on {addr}"))?;
        started.postgres = Some(listener.local_addr()?);
        let (tls, tls_server_end_point) = postgres_tls(config)?.unzip();
        let fe = proctor_postgres::PgFrontendConfig {
            tls,
            tls_server_end_point: tls_server_end_point.flatten(),
            require_tls: config.postgres.require_tls,
            max_message_bytes: usize::try_from(config.postgres.max_message_bytes)
                .unwrap_or(usize::MAX),
            sample_rows: config.postgres.sample_rows,
            ..Default::default()
        };
        if fe.require_tls && fe.tls.is_none() {
            anyhow::bail!(
                "postgres.require_tls is on (the default) but postgres.tls_cert and postgres.tls_key are not both set: \
                 give proctor a certificate and key for agents, or set postgres.require_tls = false to accept plaintext agents"
            );
        }
        if !fe.require_tls {
            // Loud on purpose: with this, an agent's SCRAM exchange and every statement and
            // result may cross the network in clear.
            tracing::warn!(
                listen = %addr,
                tls = fe.tls.is_some(),
                "postgres.require_tls = false: agents may connect WITHOUT TLS; statements, results and authentication travel in clear"
            );
        }
        let (authority, rx) = (authority.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = proctor_postgres::serve(listener, Arc::new(fe), authority, rx).await {
                tracing::error!(error = %e, "PostgreSQL listener failed");
            }
        }));
    }
    if let Some(addr) = config.listen.ssh {
        let path = config
            .ssh
            .host_key
            .clone()
            .unwrap_or_else(|| config.data_dir.join("keys").join("ssh_host_ed25519_key"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let host_key = proctor_ssh::load_or_create_host_key(&path)
            .with_context(|| format!("ssh.host_key: {}", path.display()))?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen.ssh: cannot listen on {addr}"))?;
        started.ssh = Some(listener.local_addr()?);
        let mut fe = proctor_ssh::SshFrontendConfig::new(host_key);
        fe.accept_env = Arc::new(proctor_ssh::EnvAllowList::new(
            config.ssh.accept_env.clone(),
        ));
        let fe = Arc::new(fe);
        let (authority, rx) = (authority.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = proctor_ssh::serve(listener, fe, authority, rx).await {
                tracing::error!(error = %e, "SSH listener failed");
            }
        }));
    }
    if let Some(addr) = config.listen.api {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen.api: cannot listen on {addr}"))?;
        started.api = Some(listener.local_addr()?);
        let app = crate::api::router(service.clone(), shutdown.clone());
        tasks.push(tokio::spawn(crate::api::serve(
            listener,
            app,
            shutdown.clone(),
        )));
    }
    crate::webhooks::start(core, &config.webhooks, shutdown, tasks)?;
    Ok(started)
}
