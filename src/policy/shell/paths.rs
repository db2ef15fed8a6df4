//! Paths as the kernel resolves them, as far as the text says: `//`, `/./` and `/../`
//! resolved lexically, and the kernel's links to a process's directories followed (`/proc/PID/root`
//! is `/`; `/proc/PID/cwd`, `/proc/PID/fd/N`, `/dev/fd/N` are directories proctor does not know,
//! so what is below them is a relative path).

/// A path with `//`, `/./` and (for absolute paths) `/../` resolved lexically, so
/// `/etc//shadow` and `/etc/ssh/../shadow` read as `/etc/shadow`. The kernel's links to a
/// process's directories are followed: `/proc/PID/root/etc/shadow` is `/etc/shadow`, and
/// `/proc/PID/cwd/x`, `/proc/PID/fd/N/x` and `/dev/fd/N/x` are `x` under a directory proctor
/// does not know (a relative path).
pub fn normalize_path(p: &str) -> String {
    let mut path = lexical_path(p);
    // Bounded: each step removes at least two parts.
    for _ in 0..16 {
        match through_proc_link(&path) {
            Some(next) => path = lexical_path(&next),
            None => break,
        }
    }
    path
}

/// `/proc/X/root/REST` -> `/REST`; `/proc/X/cwd/REST`, `/proc/X/fd/N/REST`,
/// `/dev/fd/N/REST` (and their `/proc/X/task/Y/` forms) -> `REST`, relative.
fn through_proc_link(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    // parts[0] is "" for an absolute path.
    if parts.first() != Some(&"") {
        return None;
    }
    let (link, at) = match parts.get(1..) {
        Some(["proc", _, "task", _, link, ..]) => (*link, 6),
        Some(["proc", _, link, ..]) => (*link, 4),
        Some(["dev", "fd", _, ..]) => ("fd", 4),
        _ => return None,
    };
    let at = if link == "fd" && parts[1] == "proc" {
        at + 1
    } else {
        at
    };
    match link {
        "root" => Some(format!("/{}", parts.get(at..)?.join("/"))),
        "cwd" | "fd" if parts.len() > at => {
            let rest = parts[at..].join("/");
            (!rest.is_empty()).then_some(rest)
        }
        _ => None,
    }
}

fn lexical_path(p: &str) -> String {
    if !p.contains("//") && !p.contains("/.") {
        return p.to_string();
    }
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." if absolute => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}
