//! Judgement as a channel waits for it: the gate's decision, and a hold waited out while the
//! agent's input is still read (and buffered), the stop signals watched, and the approval
//! cancelled if the agent leaves.

use proctor_gate::{Action, Decision, Event, GateError, Resolution, ShellMode};

use super::agent_input::AgentIn;
use super::{ChanCtx, Flow, Interrupt, Judged, Style, Watches, notice, record_failed};
use crate::session::wait_true;

/// Asks the gate, and waits out a hold while still reading (and buffering) agent input.
pub(super) async fn judge(
    ctx: &ChanCtx,
    action: Action,
    label: &str,
    style: Style,
    input: &mut AgentIn,
    w: &mut Watches,
) -> Judged {
    let unenforced_line = matches!(action, Action::CommandLine { .. })
        && ctx.sess.target.shell == ShellMode::RecordOnly;
    let decision = tokio::select! {
        d = ctx.sess.gate.decide(action) => d,
        i = w.interrupted() => return Judged::Gone(i),
    };
    follow(ctx, decision, label, style, input, w, unenforced_line).await
}

/// Acts on a decision: a hold is waited out while agent input is still read (and buffered).
pub(super) async fn follow(
    ctx: &ChanCtx,
    decision: Result<Decision, GateError>,
    label: &str,
    style: Style,
    input: &mut AgentIn,
    w: &mut Watches,
    unenforced_line: bool,
) -> Judged {
    match decision {
        // The action or its verdict could not be recorded (or the session is over): the
        // channel ends; nothing after it may reach the target.
        Err(e) => {
            tracing::warn!(error = %e, "judging failed; the channel ends");
            notice(ctx, &format!("proctor: {label} refused: {e}"), style).await;
            Judged::Gone(record_failed())
        }
        Ok(Decision::Allow) => Judged::Allow,
        Ok(Decision::Deny { rule, reason }) => Judged::Deny(format!(
            "proctor: {label} denied by policy (rule {rule}): {reason}"
        )),
        Ok(Decision::Held(hold)) => {
            if unenforced_line && let Err(i) = record_unenforced_hold(ctx, &hold.rule, label).await
            {
                return Judged::Gone(i);
            }
            notice(
                ctx,
                &format!(
                    "proctor: {label} is held for approval {} (rule {}: {}); waiting for a decision...",
                    hold.approval_id, hold.rule, hold.reason
                ),
                style,
            )
            .await;
            let outcome = hold.outcome;
            let mut gone = input.gone();
            tokio::select! {
                r = outcome => match r {
                    Resolution::Allow => {
                        notice(ctx, &format!("proctor: {label} approved"), style).await;
                        Judged::Allow
                    }
                    Resolution::Deny { rule, reason, .. } => Judged::Deny(format!(
                        "proctor: {label} denied (rule {rule}): {reason}"
                    )),
                },
                i = w.interrupted() => Judged::Gone(i),
                // Dropping the outcome future cancels the approval.
                _ = wait_true(&mut gone) => Judged::Gone(Interrupt::AgentGone),
            }
        }
    }
}

/// A hold rule matched a line of a record-only shell, where the target's own line editor
/// may run something else than the line judged: people are told at once.
async fn record_unenforced_hold(ctx: &ChanCtx, rule: &str, label: &str) -> Flow<()> {
    ctx.sess
        .gate
        .record(Event::Alert(proctor_gate::AlertRecord {
            rule: rule.to_string(),
            severity: "high".into(),
            message: format!(
                "hold rule {rule} matched {label} in a record-only shell: the hold cannot be \
                 enforced there (the target's line editor runs the line)"
            ),
        }))
        .await
        .map_err(|_| record_failed())
}
