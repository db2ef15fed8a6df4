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
            return self.next_change(t, req, packet, changes.into());
        }
        let allowed = self.sftp_out.split().freeze();
        self.forward(allowed);
        Ok(())
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
