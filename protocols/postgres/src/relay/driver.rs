//! The adapter around the core ([`Core`]): it owns the two streams, the gate, the control
//! channels and every future (approvals, durability tickets), feeds the core what happened, and
//! carries out the core's actions in order. It decides nothing.

use super::machine::{Ask, GateFailure, GateVerdict, Out, Verdict};
use super::*;

use proctor_gate::Action;

pub struct Relay {
    pub(super) core: Core,
    pub(super) gate: Arc<dyn Gate>,
    /// Both streams are read and written from the single poll pass ([`io`]), so they are not
    /// split.
    pub(super) client: Box<dyn Io>,
    pub(super) target: Box<dyn Io>,
    /// Written but maybe not yet flushed (a TLS stream holds written bytes until flushed; for
    /// TCP and pipes the flush is free).
    pub(super) c_dirty: bool,
    pub(super) t_dirty: bool,
    /// Kill, shutdown, and CancelRequests carrying this session's key.
    pub(super) control: ControlFuture,
    /// For reading the kill reason outside the control future.
    pub(super) kill_view: watch::Receiver<Option<String>>,
    _cancels_tx: Arc<watch::Sender<u64>>,
    pub(super) backend_cancel: Option<BackendCancel>,
    /// Durability of enqueued events, awaited when too many are pending.
    pub(super) tickets: Tickets,
    /// Durability tickets of overlapped verdicts, oldest first; each resolution is acked to
    /// the core, which releases the answers waiting for it.
    pub(super) durables: VecDeque<Durable>,
    /// Approvals of held decisions; the core says which one it waits for.
    pub(super) holds: Vec<Hold>,
}

impl Relay {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gate: Arc<dyn Gate>,
        cfg: Arc<PgFrontendConfig>,
        client: Box<dyn Io>,
        client_buffered: BytesMut,
        target: TargetSide,
        greeting: BytesMut,
        shutdown: Option<watch::Receiver<bool>>,
        hold_cancel_tx: Arc<watch::Sender<u64>>,
        backend_cancel: Option<BackendCancel>,
    ) -> Relay {
        let core = Core::new(
            cfg,
            gate.session_id().to_string(),
            &target.params,
            target.status,
            client_buffered,
            greeting,
            target.leftover,
        );
        let kill = gate.kill_signal();
        let kill_view = kill.clone();
        let control: ControlFuture = Box::pin(control(ControlRx {
            kill,
            kill_live: true,
            shutdown,
            cancels: hold_cancel_tx.subscribe(),
        }));
        Relay {
            core,
            gate,
            client,
            target: target.io,
            c_dirty: false,
            t_dirty: false,
            control,
            kill_view,
            _cancels_tx: hold_cancel_tx,
            backend_cancel,
            tickets: Tickets {
                q: VecDeque::new(),
                bytes: 0,
            },
            durables: VecDeque::new(),
            holds: Vec::new(),
        }
    }

    /// Runs the session to its end and says how it ended. The caller calls `Gate::end`.
    pub async fn run(mut self) -> (Outcome, String) {
        let killed = self.kill_view.borrow().clone();
        match killed {
            Some(reason) => self.core.stop(End::Killed(reason)),
            None => self.core.start(),
        }
        loop {
            if let Some(end) = self.act().await {
                return self.finish(end).await;
            }
            let ev = std::future::poll_fn(|cx| self.poll_io(cx)).await;
            match ev {
                Ev::Control(Control::Killed(reason)) => self.core.stop(End::Killed(reason)),
                Ev::Control(Control::Shutdown) => self.core.stop(End::Shutdown),
                Ev::Control(Control::Cancel) => self.core.cancel(),
                Ev::Hold(res) => {
                    // The approval resolved: its future is done with.
                    if let Some(id) = self.core.held().map(str::to_string) {
                        self.holds.retain(|h| h.approval_id != id);
                    }
                    let killed = self.kill_view.borrow().clone();
                    self.core.resolved(res, killed);
                }
                Ev::RecordFailed(e) => {
                    let f = self.failure(e);
                    self.core.durable(Err(f));
                }
                Ev::TargetData => self.core.target_data(),
                Ev::ClientData => self.core.client_data(),
                Ev::TargetGone(r) => self.core.target_gone(r),
                Ev::ClientGone(r) => self.core.client_gone(r),
            }
        }
    }

    fn failure(&self, error: GateError) -> GateFailure {
        GateFailure {
            error,
            killed: self.kill_view.borrow().clone(),
        }
    }

    /// Carries out the core's actions in order, feeding each answer back before the next.
    /// `Some`: the session is over.
    async fn act(&mut self) -> Option<End> {
        while let Some(action) = self.core.poll_action() {
            match action {
                Out::Record(ev) => {
                    let w = ev.weight();
                    let r = match self.gate.enqueue(ev).await {
                        Ok(d) => self.tickets.push(d, w).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = r {
                        let f = self.failure(e);
                        self.core.gate_failed(f);
                    }
                }
                Out::Judge { ask, actions } => {
                    let v = self.judge(ask, actions).await;
                    self.core.verdict(v);
                }
                Out::Settle => {
                    let r = self.tickets.settle().await.map_err(|e| self.failure(e));
                    self.core.settled(r);
                }
                Out::Bound { pending } => {
                    while self.durables.len() > pending && !self.core.ended() {
                        let Some(d) = self.durables.pop_front() else {
                            break;
                        };
                        let r = d.wait().await.map_err(|e| self.failure(e));
                        self.core.durable(r);
                    }
                }
                Out::ParamTypes { statement, types } => self.gate.param_types(statement, types),
                Out::CancelBackend => {
                    if let Some(b) = self.backend_cancel.clone() {
                        tokio::spawn(crate::cancel::cancel_backend(b));
                    }
                }
                // Dropping the hold cancels the approval.
                Out::Withdraw(id) => self.holds.retain(|h| h.approval_id != id),
                Out::End(end) => return Some(end),
            }
        }
        None
    }

    /// Asks the gate as the core asked; approvals of held decisions are kept here.
    async fn judge(
        &mut self,
        ask: Ask,
        mut actions: Vec<Action>,
    ) -> Result<GateVerdict, GateFailure> {
        let (decisions, ticket) = match ask {
            Ask::One => {
                let Some(a) = actions.pop() else {
                    return Err(self.failure(GateError::Recorder("nothing to judge".into())));
                };
                let d = self.gate.decide(a).await.map_err(|e| self.failure(e))?;
                (vec![d], None)
            }
            Ask::All => {
                let d = self
                    .gate
                    .decide_all(actions)
                    .await
                    .map_err(|e| self.failure(e))?;
                (d, None)
            }
            Ask::Overlapped => self
                .gate
                .decide_all_overlapped(actions)
                .await
                .map_err(|e| self.failure(e))?,
        };
        let ticket = match ticket {
            Some(t) => {
                self.durables.push_back(t);
                true
            }
            None => false,
        };
        let mut keep = |h: Hold| self.holds.push(h);
        let decisions = decisions
            .into_iter()
            .map(|d| Verdict::from_decision(d, &mut keep))
            .collect();
        Ok(GateVerdict { decisions, ticket })
    }
}
