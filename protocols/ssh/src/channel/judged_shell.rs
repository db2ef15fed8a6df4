//! The target-to-agent side of a judged shell: what proctor does when the target took a
//! judged command as unfinished. (The agent-to-target side is in `upstream_core/shell.rs`.)

use std::sync::Mutex;

use proctor_gate::Event;

use super::relay::Fwd;
use super::{ChanCtx, DownEnd, Style, notice};
use crate::judged::Discipline;

/// The target printed its continuation prompt after reading the whole of a judged command:
/// bash took it as unfinished and would join the next judged line to it. It is interrupted
/// (bash drops what it read), recorded, and the agent told.
pub(super) async fn unfinished(
    ctx: &ChanCtx,
    d: &Mutex<Discipline>,
    to_target: &tokio::sync::mpsc::WeakUnboundedSender<Fwd>,
) -> Result<(), DownEnd> {
    let recorded = ctx
        .sess
        .gate
        .record(Event::Annotation {
            source: "proctor".into(),
            text: "judged shell: target read the command as unfinished; discarded (proctor \
                   sent the interrupt character)"
                .into(),
        })
        .await;
    if recorded.is_err() {
        return Err(DownEnd::RecordFailed);
    }
    match d.lock() {
        Ok(mut d) => d.interrupting(),
        Err(_) => return Err(DownEnd::Internal),
    }
    // Gone only when the channel is ending: then nothing more is sent at all.
    if let Some(tx) = to_target.upgrade() {
        let _ = tx.send(Fwd::Interrupt);
    }
    notice(
        ctx,
        "proctor: the target read the command as unfinished and would have joined the next \
         line to it; bash dropped the unfinished command",
        Style::Terminal,
    )
    .await;
    Ok(())
}
