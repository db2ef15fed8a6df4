//! Where an SFTP change lands on the target's file system, asked of the target itself.
//!
//! A path as written can pass through a symbolic link already on the target (`/tmp/w/gl ->
//! /etc`), so `put x /tmp/w/gl/shadow` writes `/etc/shadow`. Before a change is judged,
//! proctor asks the target's own SFTP server (REALPATH, on a channel of its own) where each
//! path lands, and judges the change as written and, where it differs, as resolved.
//!
//! OpenSSH's REALPATH resolves every link, and accepts a last component that does not exist
//! (it answers NO_SUCH_FILE only when a directory above it is missing). So:
//! - a change that follows the last component (a write through `open`, `setstat`) asks for the
//!   whole path: a link at the leaf, dangling or not, is followed as the write will follow it;
//! - a change to the name itself (remove, rename, link, mkdir) asks for the parent directory
//!   and appends the last component: removing a link removes the link, not what it names.

use super::request::Change;

/// One question for the target: REALPATH of `query`, then `leaf` appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ask {
    pub query: String,
    pub leaf: Option<String>,
}

/// The target's answer to one `Ask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Where the path lands.
    Real(String),
    /// A directory above it does not exist: the change fails there too, so it is judged as
    /// written.
    Missing,
    /// No answer (the side channel failed, the target refused, or it took too long).
    Failed(String),
}

/// Whether `op` acts on what the last component names (following a link there).
fn follows_leaf(op: &str) -> bool {
    matches!(op, "open-write" | "setstat" | "fsetstat")
}

/// The paths of a change that name where it writes: both ends of a rename or hard link; the
/// link itself of a symlink (its target is text, judged by policy from the link's directory).
fn written_ends(c: &Change) -> Vec<&str> {
    let mut ends = vec![c.path.as_str()];
    if matches!(c.op.as_str(), "rename" | "hardlink") {
        ends.push(c.target_path.as_str());
    }
    ends
}

/// Whether a path can be asked about: a handle proctor never saw opened has no path.
fn askable(p: &str) -> bool {
    !p.is_empty() && !p.starts_with("<handle ")
}

fn ask_for(op: &str, path: &str) -> Ask {
    let trimmed = path.trim_end_matches('/');
    if follows_leaf(op) || trimmed.is_empty() {
        return Ask {
            query: path.to_string(),
            leaf: None,
        };
    }
    let (dir, leaf) = match trimmed.rsplit_once('/') {
        Some(("", leaf)) => ("/", leaf),
        Some((dir, leaf)) => (dir, leaf),
        None => (".", trimmed),
    };
    if leaf == "." || leaf == ".." || leaf.is_empty() {
        return Ask {
            query: path.to_string(),
            leaf: None,
        };
    }
    Ask {
        query: dir.to_string(),
        leaf: Some(leaf.to_string()),
    }
}

/// The questions for a request's changes, in order (one per written end).
pub(crate) fn asks(changes: &[Change]) -> Vec<Ask> {
    changes
        .iter()
        .flat_map(|c| {
            written_ends(c)
                .into_iter()
                .filter(|p| askable(p))
                .map(|p| ask_for(&c.op, p))
        })
        .collect()
}

/// The path an answer gives, or `None` where the change is judged as written only.
fn landed(ask: &Ask, answer: &Answer) -> Option<String> {
    let Answer::Real(real) = answer else {
        return None;
    };
    Some(match &ask.leaf {
        None => real.clone(),
        Some(leaf) if real.ends_with('/') => format!("{real}{leaf}"),
        Some(leaf) => format!("{real}/{leaf}"),
    })
}

/// What the answers say, change by change: the change as resolved where it lands elsewhere
/// than written, and a line for the record on each path the target resolved differently.
/// `answers` must be in the order of `asks(changes)`.
pub(crate) fn resolved(changes: &[Change], answers: &[Answer]) -> (Vec<Change>, Vec<String>) {
    let mut it = answers.iter();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for c in changes {
        let mut ends: Vec<String> = Vec::new();
        let mut differs = false;
        for p in written_ends(c) {
            if !askable(p) {
                ends.push(p.to_string());
                continue;
            }
            let ask = ask_for(&c.op, p);
            let answer = it.next();
            match answer.and_then(|a| landed(&ask, a)) {
                Some(real) if real != p => {
                    notes.push(format!(
                        "sftp {}: {p:?} resolves on the target to {real:?}",
                        c.op
                    ));
                    differs = true;
                    ends.push(real);
                }
                _ => ends.push(p.to_string()),
            }
        }
        if differs {
            let mut ends = ends.into_iter();
            let path = ends.next().unwrap_or_default();
            let target_path = ends.next().unwrap_or_else(|| c.target_path.clone());
            out.push(Change {
                op: c.op.clone(),
                path,
                target_path,
            });
        }
    }
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: &str, path: &str, target: &str) -> Change {
        Change {
            op: op.into(),
            path: path.into(),
            target_path: target.into(),
        }
    }

    #[test]
    fn a_write_asks_for_the_whole_path_and_a_name_change_for_its_directory() {
        let c = [
            change("open-write", "w/gl/shadow", ""),
            change("remove", "/tmp/w/link", ""),
            change("rename", "a", "/tmp/w/gl/b/"),
            change("symlink", "/tmp/l", "/etc/shadow"),
            change("mkdir", "/x", ""),
            change("rmdir", "/tmp/w/..", ""),
            change("fsetstat", "<handle 00>", ""),
        ];
        let q: Vec<(String, Option<String>)> =
            asks(&c).into_iter().map(|a| (a.query, a.leaf)).collect();
        let s = |q: &str, l: Option<&str>| (q.to_string(), l.map(str::to_string));
        assert_eq!(
            q,
            vec![
                s("w/gl/shadow", None),
                s("/tmp/w", Some("link")),
                s(".", Some("a")),
                s("/tmp/w/gl", Some("b")),
                s("/tmp", Some("l")),
                s("/", Some("x")),
                s("/tmp/w/..", None),
            ]
        );
    }

    #[test]
    fn a_change_that_lands_elsewhere_is_judged_again_where_it_lands() {
        let c = [
            change("open-write", "/tmp/w/gl/shadow", ""),
            change("rename", "/tmp/a", "/tmp/w/gl/b"),
            change("remove", "/tmp/gone/x", ""),
        ];
        let answers = [
            Answer::Real("/etc/shadow".into()),
            Answer::Real("/tmp".into()),
            Answer::Real("/etc/".into()),
            Answer::Missing,
        ];
        let (more, notes) = resolved(&c, &answers);
        assert_eq!(
            more,
            vec![
                change("open-write", "/etc/shadow", ""),
                change("rename", "/tmp/a", "/etc/b"),
            ]
        );
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("\"/etc/shadow\""));
        // Failed answers add nothing here: the caller refuses the request.
        let (more, _) = resolved(&c[..1], &[Answer::Failed("x".into())]);
        assert!(more.is_empty());
    }
}
