//! The core's SFTP: requests are framed and decoded; one that changes the target waits for a
//! verdict on each of its changes, in request order; what changes nothing is forwarded in
//! batches. A refused request is recorded, then answered to the agent with a permission error.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use proctor_gate::{Action, Event};

use super::{
    Change, CoreEnd, CoreResult, Mode, Request, SftpTracker, UpAction, UpCore, Verdict, Wait, Work,
    lock, sftp,
};

impl UpCore {
    pub(super) fn sftp_data(&mut self, t: &Mutex<SftpTracker>, data: Bytes) -> CoreResult<()> {
        self.framer.push(&data);
        loop {
            let packet = match self.framer.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(self.sftp_violation(e.to_string())),
            };
            let req = match sftp::parse_request(&packet) {
                Ok(r) => r,
                Err(e) => return Err(self.sftp_violation(e.to_string())),
            };
            // A poisoned tracker cannot say what a request changes: the channel ends rather
            // than forward it unjudged.
            let changes = lock(t, |t| t.changes(&req))?;
            if changes.is_empty() {
                lock(t, |t| t.forwarded(req))?;
                self.sftp_out.extend_from_slice(&packet);
                continue;
            }
            // Keep request order: what was allowed so far goes first.
            let allowed = self.sftp_out.split().freeze();
            self.forward(allowed);
            return self.resolve(t, req, packet, changes);
        }
        let allowed = self.sftp_out.split().freeze();
        self.forward(allowed);
        Ok(())
    }

    /// Asks the target where the change's paths land before any is judged; a change with no
    /// path to ask about (a handle proctor never saw opened) is judged as it stands.
    fn resolve(
        &mut self,
        t: &Mutex<SftpTracker>,
        req: Request,
        packet: Bytes,
        changes: Vec<Change>,
    ) -> CoreResult<()> {
        let asks = sftp::asks(&changes);
        if asks.is_empty() {
            return self.next_change(t, req, packet, changes.into());
        }
        self.out.push_back(UpAction::Resolve(asks));
        self.wait = Some(Wait::Resolve {
            req,
            packet,
            changes,
        });
        Ok(())
    }

    /// Judges each change as written and, where the target resolves a path elsewhere, as
    /// resolved too (each resolution recorded first). A path the target could not be asked
    /// about may pass through a link into anything: the request is refused (rule 2).
    pub(super) fn sftp_resolved(
        &mut self,
        req: Request,
        packet: Bytes,
        changes: Vec<Change>,
        answers: Vec<sftp::Answer>,
    ) -> CoreResult<()> {
        let Mode::Sftp(t) = &self.mode else {
            return Err(CoreEnd::Internal);
        };
        let t = t.clone();
        let failed = answers.iter().find_map(|a| match a {
            sftp::Answer::Failed(why) => Some(why.clone()),
            _ => None,
        });
        if let Some(why) = failed.or_else(|| {
            (answers.len() != sftp::asks(&changes).len())
                .then(|| "the target gave no answer for every path".to_string())
        }) {
            let msg = format!(
                "proctor could not ask the target where this path lands ({why}), \
                 so it cannot judge the write"
            );
            return self.sftp_verdict(req, packet, VecDeque::new(), Verdict::Deny(msg));
        }
        let (more, notes) = sftp::resolved(&changes, &answers);
        for n in notes {
            self.note(n);
        }
        let mut all: VecDeque<Change> = changes.into();
        all.extend(more);
        self.next_change(&t, req, packet, all)
    }

    /// Asks for the next change's verdict, or forwards the request once all are allowed.
    fn next_change(
        &mut self,
        t: &Mutex<SftpTracker>,
        req: Request,
        packet: Bytes,
        mut changes: VecDeque<Change>,
    ) -> CoreResult<()> {
        let Some(c) = changes.pop_front() else {
            lock(t, |t| t.forwarded(req))?;
            self.forward(packet);
            return self.sftp_resume();
        };
        let label = if c.target_path.is_empty() {
            format!("sftp {} {}", c.op, c.path)
        } else {
            format!("sftp {} {} -> {}", c.op, c.path, c.target_path)
        };
        self.out.push_back(UpAction::Judge {
            action: Action::SftpChange {
                channel: self.cfg.channel,
                op: c.op,
                path: c.path,
                target_path: c.target_path,
            },
            label,
        });
        self.wait = Some(Wait::Sftp {
            req,
            packet,
            changes,
        });
        Ok(())
    }

    pub(super) fn sftp_verdict(
        &mut self,
        req: Request,
        packet: Bytes,
        changes: VecDeque<Change>,
        v: Verdict,
    ) -> CoreResult<()> {
        let Mode::Sftp(t) = &self.mode else {
            return Err(CoreEnd::Internal);
        };
        let t = t.clone();
        match v {
            Verdict::Allow => self.next_change(&t, req, packet, changes),
            Verdict::Deny(msg) => {
                // The refusal is recorded before the agent hears of it.
                if let Some(rec) = lock(&t, |t| t.denied(&req, &msg))? {
                    self.out.push_back(UpAction::Record(Event::Sftp(rec)));
                }
                if let Some(id) = req.id {
                    let reply = sftp::status_packet(id, sftp::FX_PERMISSION_DENIED, &msg);
                    self.out.push_back(UpAction::ToAgent(reply));
                }
                self.sftp_resume()
            }
        }
    }

    /// The requests already framed behind the one judged are read next.
    fn sftp_resume(&mut self) -> CoreResult<()> {
        self.todo.push_front(Work::Data(Bytes::new()));
        Ok(())
    }

    fn sftp_violation(&mut self, what: String) -> CoreEnd {
        let _ = self.framer.take_rest();
        CoreEnd::SftpViolation(format!("undecodable SFTP request: {what}"))
    }
}
