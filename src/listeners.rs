//! Binds the protocol listeners named in the config and hands them to the protocol crates.

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::watch;

use crate::config::Config;
use crate::serve::Started;
use crate::session::Core;

pub async fn start(
    _core: &Arc<Core>,
    _authority: Arc<dyn proctor_gate::Authority>,
    _config: &Config,
    _shutdown: watch::Receiver<bool>,
    _tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Started> {
    Ok(Started {
        postgres: None,
        ssh: None,
        api: None,
    })
}
