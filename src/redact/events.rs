//! What is recorded: an action or event with its secrets redacted and its sensitive values
//! sealed (statements, their parameters and results, terminal streams, every other text).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use proctor_gate::{Action, Event, Param, Statement};

use super::columns;
use super::rules::Mode;
use super::{Hit, Redactor, SessionRedaction};

impl Redactor {
    /// The statement as it is recorded: secrets redacted, sensitive columns sealed in its text
    /// and parameters. Remembers which result columns to seal.
    fn statement(&self, st: &mut SessionRedaction, s: &Statement) -> Option<Statement> {
        self.statement_checked(st, s).0
    }

    /// [`Self::statement`], and what [`Redactor::hides_code`] says of its text, from one
    /// search of the text.
    fn statement_checked(
        &self,
        st: &mut SessionRedaction,
        s: &Statement,
    ) -> (Option<Statement>, Option<String>) {
        let sid = st.session_id.as_str();
        let sensitive = if self.columns.is_empty() {
            None
        } else {
            let relevant = columns::relevant(&self.columns, &s.tables);
            (!relevant.is_empty()).then(|| columns::analyze(&s.text, &relevant))
        };
        let mut hits = Vec::new();
        let mut literal_fields: Vec<String> = Vec::new();
        if let Some(c) = &sensitive {
            literal_fields = c.literals.iter().map(|(_, _, f)| f.clone()).collect();
        }
        if let Some(c) = &sensitive {
            for ((start, end, _), field) in c.literals.iter().zip(&literal_fields) {
                let (mut a, mut b) = (*start, *end);
                let lit = &s.text.as_bytes()[a..b];
                // Keep the quotes so the recorded statement still reads as SQL.
                if lit.len() >= 2 && lit[lit.len() - 1] == b'\'' {
                    if lit[0] == b'\'' {
                        a += 1;
                    } else if lit.len() >= 3 && lit[1] == b'\'' {
                        a += 2;
                    }
                    b -= 1;
                }
                if a < b {
                    hits.push(Hit {
                        start: a,
                        end: b,
                        kind: field,
                        mode: Mode::Seal,
                    });
                }
            }
        }
        let detected_from = hits.len();
        self.find(&s.text, &mut hits);
        let hides = super::hides_in(&s.text, &hits[detected_from..]);
        let text = self.apply(sid, &s.text, hits);
        let mut params: Option<Vec<Param>> = None;
        for (i, p) in s.params.iter().enumerate() {
            let Some(v) = &p.value else { continue };
            let field = sensitive.as_ref().and_then(|c| {
                c.params
                    .iter()
                    .find(|(n, _)| *n == i + 1)
                    .map(|(_, f)| f.as_str())
            });
            let new = match field {
                Some(f) => Some(self.seal_bytes(sid, f, v)),
                None if !p.binary => std::str::from_utf8(v)
                    .ok()
                    .and_then(|t| self.text_opt(sid, t)),
                None => None,
            };
            if let Some(new) = new {
                let ps = params.get_or_insert_with(|| s.params.clone());
                // The marker is text, whatever the value's wire format was.
                ps[i] = Param {
                    binary: false,
                    value: Some(Bytes::from(new)),
                };
            }
        }
        let reasoning = s.reasoning.as_deref().and_then(|r| self.text_opt(sid, r));
        if let Some(c) = sensitive
            && !c.outputs.is_empty()
        {
            if st.results.len() >= 4096 {
                // Statements denied or abandoned never get a result; do not grow forever.
                st.results.clear();
            }
            st.results.insert(s.id, Arc::new(c));
        }
        if text.is_none() && params.is_none() && reasoning.is_none() {
            return (None, hides);
        }
        let mut out = s.clone();
        if let Some(t) = text {
            out.text = t;
        }
        if let Some(p) = params {
            out.params = p;
        }
        if reasoning.is_some() {
            out.reasoning = reasoning;
        }
        (Some(out), hides)
    }

    /// [`Self::action`], and the kind of a secret whose redaction would hide code in the
    /// action's text ([`Redactor::hides_code`] of a statement, command or line), from one
    /// search of the text: judging a statement of megabytes searched it twice.
    pub fn action_checked(
        &self,
        st: &mut SessionRedaction,
        action: &Action,
    ) -> (Option<Action>, Option<String>) {
        if !self.enabled {
            return (None, None);
        }
        let sid = st.session_id.clone();
        match action {
            Action::Statement(s) => {
                let (s, hides) = self.statement_checked(st, s);
                (s.map(Action::Statement), hides)
            }
            Action::Exec { channel, command } => {
                let (command, hides) = self.text_checked(&sid, command);
                let channel = *channel;
                (
                    command.map(|command| Action::Exec { channel, command }),
                    hides,
                )
            }
            Action::CommandLine { channel, line } => {
                let (line, hides) = self.text_checked(&sid, line);
                let channel = *channel;
                (
                    line.map(|line| Action::CommandLine { channel, line }),
                    hides,
                )
            }
            _ => (self.action(st, action), None),
        }
    }

    /// The action as it may be recorded and shown to approvers; `None` when unchanged.
    pub fn action(&self, st: &mut SessionRedaction, action: &Action) -> Option<Action> {
        if !self.enabled {
            return None;
        }
        let sid = st.session_id.clone();
        match action {
            Action::Statement(s) => self.statement(st, s).map(Action::Statement),
            Action::Exec { channel, command } => {
                self.text_opt(&sid, command).map(|command| Action::Exec {
                    channel: *channel,
                    command,
                })
            }
            Action::CommandLine { channel, line } => {
                self.text_opt(&sid, line).map(|line| Action::CommandLine {
                    channel: *channel,
                    line,
                })
            }
            Action::Channel {
                channel,
                kind,
                detail,
            } => self.text_opt(&sid, detail).map(|detail| Action::Channel {
                channel: *channel,
                kind: *kind,
                detail,
            }),
            // SFTP paths are not secrets, and policy rules name them.
            Action::SftpChange { .. } => None,
        }
    }

    /// The event as it is recorded; `None` when unchanged.
    pub fn event(&self, st: &mut SessionRedaction, event: &Event) -> Option<Event> {
        if !self.enabled {
            return None;
        }
        let sid = st.session_id.clone();
        let t = |s: &str| self.text_opt(&sid, s);
        match event {
            Event::Statement(s) => self.statement(st, s).map(Event::Statement),
            Event::StatementResult(r) => {
                let cols = if r.suspended {
                    st.results.get(&r.statement_id).cloned()
                } else {
                    st.results.remove(&r.statement_id)
                };
                let fields: Vec<Option<&str>> = r
                    .columns
                    .iter()
                    .map(|name| {
                        let lower = name.to_ascii_lowercase();
                        cols.as_ref().and_then(|c| {
                            c.outputs
                                .iter()
                                .find(|(n, _)| *n == lower)
                                .map(|(_, f)| f.as_str())
                        })
                    })
                    .collect();
                let mut changed = false;
                let rows: Vec<Vec<Option<String>>> = r
                    .sample_rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .map(|(i, v)| {
                                let v = v.as_deref()?;
                                let new = match fields.get(i).copied().flatten() {
                                    Some(f) => Some(self.seal_bytes(&sid, f, v.as_bytes())),
                                    None => t(v),
                                };
                                changed |= new.is_some();
                                Some(new.unwrap_or_else(|| v.to_string()))
                            })
                            .collect()
                    })
                    .collect();
                let message = r.error.as_ref().and_then(|e| t(&e.message));
                if !changed && message.is_none() {
                    return None;
                }
                let mut out = r.clone();
                out.sample_rows = rows;
                if let (Some(m), Some(e)) = (message, out.error.as_mut()) {
                    e.message = m;
                }
                Some(Event::StatementResult(out))
            }
            Event::Input { channel, data } => {
                let mut open = st.key_open.contains(&(*channel, 0));
                let new = self.stream_bytes(&sid, data, &mut open);
                set_open(&mut st.key_open, (*channel, 0), open);
                new.map(|data| Event::Input {
                    channel: *channel,
                    data,
                })
            }
            Event::Output {
                channel,
                stream,
                data,
            } => {
                let dir = match stream {
                    proctor_gate::OutputStream::Stdout => 1,
                    proctor_gate::OutputStream::Stderr => 2,
                };
                let mut open = st.key_open.contains(&(*channel, dir));
                let new = self.stream_bytes(&sid, data, &mut open);
                set_open(&mut st.key_open, (*channel, dir), open);
                new.map(|data| Event::Output {
                    channel: *channel,
                    stream: *stream,
                    data,
                })
            }
            Event::Exec { channel, command } => t(command).map(|command| Event::Exec {
                channel: *channel,
                command,
            }),
            Event::CommandLine { channel, line } => t(line).map(|line| Event::CommandLine {
                channel: *channel,
                line,
            }),
            Event::Annotation { source, text } => t(text).map(|text| Event::Annotation {
                source: source.clone(),
                text,
            }),
            Event::ClientParams { params } => {
                let new: Vec<Option<String>> = params.iter().map(|(_, v)| t(v)).collect();
                new.iter()
                    .any(Option::is_some)
                    .then(|| Event::ClientParams {
                        params: params
                            .iter()
                            .zip(new)
                            .map(|((k, v), n)| (k.clone(), n.unwrap_or_else(|| v.clone())))
                            .collect(),
                    })
            }
            Event::ChannelOpen {
                channel,
                kind,
                detail,
            } => t(detail).map(|detail| Event::ChannelOpen {
                channel: *channel,
                kind: *kind,
                detail,
            }),
            Event::ChannelRequest {
                channel,
                request,
                detail,
                accepted,
            } => t(detail).map(|detail| Event::ChannelRequest {
                channel: *channel,
                request: request.clone(),
                detail,
                accepted: *accepted,
            }),
            Event::ExitSignal {
                channel,
                signal,
                message,
            } => t(message).map(|message| Event::ExitSignal {
                channel: *channel,
                signal: signal.clone(),
                message,
            }),
            Event::TargetMessage { kind, text } => t(text).map(|text| Event::TargetMessage {
                kind: kind.clone(),
                text,
            }),
            Event::Alert(a) => t(&a.message).map(|message| {
                let mut a = a.clone();
                a.message = message;
                Event::Alert(a)
            }),
            Event::Verdict(v) => {
                let (subject, reason) = (t(&v.subject), t(&v.reason));
                (subject.is_some() || reason.is_some()).then(|| {
                    let mut v = v.clone();
                    if let Some(s) = subject {
                        v.subject = s;
                    }
                    if let Some(r) = reason {
                        v.reason = r;
                    }
                    Event::Verdict(v)
                })
            }
            Event::ProtocolError { party, message } => {
                t(message).map(|message| Event::ProtocolError {
                    party: *party,
                    message,
                })
            }
            Event::SessionEnd { outcome, reason } => t(reason).map(|reason| Event::SessionEnd {
                outcome: *outcome,
                reason,
            }),
            _ => None,
        }
    }
}

fn set_open(set: &mut HashSet<(u32, u8)>, key: (u32, u8), open: bool) {
    if open {
        set.insert(key);
    } else {
        set.remove(&key);
    }
}
