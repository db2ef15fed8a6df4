//! PostgreSQL replay: one step per statement, with everything recorded about it.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent};
use crossterm::terminal;
use proctor_gate::{Event, Statement, StatementResult};

use proctor_gate::inert::{line, text};

use super::{Rec, ReplayOptions};
use crate::clock::format_ns;
use crate::export::json::param_json;

/// Everything recorded about one statement.
#[derive(Debug, Clone, Default)]
pub struct StatementStep {
    pub seq: u64,
    pub ts_ns: i64,
    pub statement: Option<Statement>,
    pub verdicts: Vec<String>,
    pub approvals: Vec<String>,
    pub alerts: Vec<String>,
    pub result: Option<StatementResult>,
    pub copies: Vec<String>,
}

/// Groups a session's events into statement steps, in order.
pub fn steps(recs: &[Rec]) -> Vec<StatementStep> {
    let mut out: Vec<StatementStep> = Vec::new();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    let mut last: Option<usize> = None;
    for r in recs {
        match &r.event {
            Event::Statement(s) => {
                by_id.insert(s.id, out.len());
                last = Some(out.len());
                out.push(StatementStep {
                    seq: r.seq,
                    ts_ns: r.ts_ns,
                    statement: Some(s.clone()),
                    ..Default::default()
                });
            }
            Event::Verdict(v) => {
                if let Some(i) = last {
                    out[i].verdicts.push(if v.approval_id.is_empty() {
                        format!(
                            "{} by rule {}: {}",
                            v.verdict.as_str(),
                            line(&v.rule),
                            line(&v.reason)
                        )
                    } else {
                        format!(
                            "{} by rule {} (approval {}): {}",
                            v.verdict.as_str(),
                            line(&v.rule),
                            line(&v.approval_id),
                            line(&v.reason)
                        )
                    });
                }
            }
            Event::Approval(a) => {
                if let Some(i) = last {
                    out[i].approvals.push(format!(
                        "{} {}{}",
                        a.outcome.as_str(),
                        if a.approver.is_empty() {
                            String::new()
                        } else {
                            format!("by {} ", line(&a.approver))
                        },
                        line(&a.reason)
                    ));
                }
            }
            Event::Alert(a) => {
                if let Some(i) = last {
                    out[i].alerts.push(format!(
                        "[{}] {}: {}",
                        line(&a.severity),
                        line(&a.rule),
                        line(&a.message)
                    ));
                }
            }
            Event::StatementResult(res) => {
                if let Some(&i) = by_id.get(&res.statement_id) {
                    out[i].result = Some(res.clone());
                }
            }
            Event::Copy {
                statement_id,
                direction,
                bytes,
                digest,
            } => {
                if let Some(&i) = by_id.get(statement_id) {
                    out[i].copies.push(format!(
                        "COPY {}: {bytes} bytes, sha256 {}",
                        direction.as_str(),
                        &hex::encode(digest)[..16]
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

pub fn render(step: &StatementStep, index: usize, total: usize) -> String {
    let mut s = String::new();
    let Some(st) = &step.statement else {
        return s;
    };
    s.push_str(&format!(
        "── statement {} of {} · seq {} · {} ──\n",
        index + 1,
        total,
        step.seq,
        format_ns(step.ts_ns)
    ));
    s.push_str(&format!(
        "class {} · {}{}{}\n",
        st.class.as_str(),
        line(&st.command),
        if st.tables.is_empty() {
            String::new()
        } else {
            let tables: Vec<_> = st.tables.iter().map(|t| line(t)).collect();
            format!(" on {}", tables.join(", "))
        },
        if st.extended {
            format!(
                " · extended protocol{}",
                if st.statement_name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", line(&st.statement_name))
                }
            )
        } else {
            String::new()
        }
    ));
    if let Some(r) = &st.reasoning {
        s.push_str(&format!("reasoning: {}\n", text(r).replace('\n', "\n  ")));
    }
    // Leading and trailing blank lines only; the statement is shown whole, inert.
    s.push_str(&format!(
        "  {}\n",
        text(st.text.trim_matches(['\n', ' '])).replace('\n', "\n  ")
    ));
    if !st.params.is_empty() {
        let params: Vec<String> = st
            .params
            .iter()
            // JSON escapes controls; bidi and invisible characters still need showing.
            .map(|p| line(&param_json(p).to_string()).into_owned())
            .collect();
        s.push_str(&format!("params: [{}]\n", params.join(", ")));
    }
    for v in &step.verdicts {
        s.push_str(&format!("verdict: {v}\n"));
    }
    for a in &step.approvals {
        s.push_str(&format!("approval: {a}\n"));
    }
    for a in &step.alerts {
        s.push_str(&format!("alert: {a}\n"));
    }
    for c in &step.copies {
        s.push_str(&format!("{c}\n"));
    }
    match &step.result {
        None => s.push_str("outcome: not forwarded or no result recorded\n"),
        Some(r) => {
            match &r.error {
                Some(e) => s.push_str(&format!(
                    "outcome: {} {}: {}\n",
                    line(&e.severity),
                    line(&e.code),
                    line(&e.message)
                )),
                None => s.push_str(&format!(
                    "outcome: {}{} · {} rows · {:.3} ms · digest {}\n",
                    line(&r.tag),
                    if r.suspended { " (suspended)" } else { "" },
                    r.rows,
                    r.duration_ns as f64 / 1e6,
                    &hex::encode(r.digest)[..16]
                )),
            }
            if !r.columns.is_empty() {
                let columns: Vec<_> = r.columns.iter().map(|c| line(c)).collect();
                s.push_str(&format!("  {}\n", columns.join(" | ")));
                for row in &r.sample_rows {
                    let cells: Vec<String> = row
                        .iter()
                        .map(|c| c.as_deref().map_or("NULL".into(), |c| line(c).into_owned()))
                        .collect();
                    s.push_str(&format!("  {}\n", cells.join(" | ")));
                }
                if r.rows > r.sample_rows.len() as u64 {
                    s.push_str(&format!(
                        "  ... {} more rows (all hashed into the digest)\n",
                        r.rows - r.sample_rows.len() as u64
                    ));
                }
            }
        }
    }
    s
}

/// Prints every step (scripts), or steps interactively on a terminal: Enter/Space/→ next,
/// ← previous, q quit.
pub fn replay(recs: &[Rec], opts: &ReplayOptions) -> io::Result<()> {
    let all = steps(recs);
    let start = recs.first().map_or(0, |r| r.ts_ns);
    let from_ns = start + (opts.from_secs * 1e9) as i64;
    let first = all
        .iter()
        .position(|s| s.ts_ns >= from_ns)
        .unwrap_or(all.len());
    let mut out = io::stdout();
    let interactive = !opts.step && io::stdin().is_terminal() && out.is_terminal();
    if !interactive {
        for (i, step) in all.iter().enumerate().skip(first) {
            write!(out, "{}", render(step, i, all.len()))?;
            writeln!(out)?;
        }
        return Ok(());
    }
    if all.is_empty() {
        writeln!(out, "no statements recorded in this session")?;
        return Ok(());
    }
    let mut i = first.min(all.len() - 1);
    terminal::enable_raw_mode()?;
    let result = (|| -> io::Result<()> {
        loop {
            let text = render(&all[i], i, all.len()).replace('\n', "\r\n");
            write!(out, "{text}\r\n[Enter/→ next · ← previous · q quit]\r\n")?;
            out.flush()?;
            loop {
                if let TermEvent::Key(KeyEvent { code, .. }) = event::read()? {
                    match code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Enter | KeyCode::Char(' ') | KeyCode::Right | KeyCode::Down => {
                            if i + 1 < all.len() {
                                i += 1;
                                break;
                            }
                            return Ok(());
                        }
                        KeyCode::Left | KeyCode::Up => {
                            i = i.saturating_sub(1);
                            break;
                        }
                        _ => {}
                    }
                }
            }
        }
    })();
    terminal::disable_raw_mode()?;
    result
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proctor_gate::{Param, SqlError, StatementClass};

    use super::*;

    /// Statement text, parameters, column names, sample rows and the target's error are all
    /// the agent's (or the target's) to choose: none of it may act on the auditor's terminal.
    #[test]
    fn a_step_is_rendered_inert_and_whole() {
        let step = StatementStep {
            seq: 7,
            ts_ns: 0,
            statement: Some(Statement {
                id: 1,
                text: "select $1 -- \x1b[2K\x1b]52;c;eA==\x07\nfrom t /*\u{202e}*/".into(),
                params: vec![Param {
                    binary: false,
                    value: Some(Bytes::from_static("a\u{200b}b\u{9b}".as_bytes())),
                }],
                statement_name: "s\x1b[1A".into(),
                portal: String::new(),
                extended: true,
                class: StatementClass::Read,
                command: "SELECT".into(),
                tables: vec!["t\x1b]2;x\x07".into()],
                reasoning: Some("why\r\nnot".into()),
                runs: None,
            }),
            result: Some(StatementResult {
                statement_id: 1,
                tag: String::new(),
                rows: 1,
                error: Some(SqlError {
                    severity: "ERROR".into(),
                    code: "XX000".into(),
                    message: "bad\x1b[31m".into(),
                }),
                duration_ns: 1,
                columns: vec!["c\u{2066}".into()],
                sample_rows: vec![vec![Some("row\nforged: line".into()), None]],
                digest: [0; 32],
                suspended: false,
            }),
            ..Default::default()
        };
        let out = render(&step, 0, 1);
        assert!(
            !out.contains([
                '\x1b', '\x07', '\r', '\u{9b}', '\u{202e}', '\u{2066}', '\u{200b}'
            ]),
            "{out:?}"
        );
        for shown in [
            "  select $1 -- \\x1b[2K\\x1b]52;c;eA==\\x07\n  from t /*<U+202E>*/\n",
            "(s\\x1b[1A)",
            " on t\\x1b]2;x\\x07",
            "reasoning: why\\r\n  not",
            "params: [\"a<U+200B>b<U+009B>\"]",
            "outcome: ERROR XX000: bad\\x1b[31m",
            "  c<U+2066>\n  row\\nforged: line | NULL\n",
        ] {
            assert!(out.contains(shown), "{shown:?} not in {out}");
        }
    }
}
