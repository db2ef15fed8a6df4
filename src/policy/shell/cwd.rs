//! The shell's working directory within one line, for judging relative writes: followed
//! through `cd`/`pushd` with a literal directory (exactly for an absolute one, as a guess kept
//! beside the relative path for a relative one), unknown after a directory known only at run
//! time (then relative writes are hidden), and the directory `env -C`/`sudo -D` run a command in.

use super::words::Word;
use super::{Reader, normalize_path};

impl Reader {
    /// `cd`, `pushd`, `popd`.
    pub(super) fn directory_change(&mut self, program: &str, args: &[Word]) {
        if matches!(program, "cd" | "pushd" | "popd") {
            if program == "popd" {
                // Back to a directory of the stack: known only at run time.
                self.cwd = None;
                self.cwd_unknown = true;
            } else {
                self.change_directory(args);
            }
        }
    }

    /// Follows `cd`/`pushd` with a literal directory; anything else forgets the directory.
    pub(super) fn change_directory(&mut self, args: &[Word]) {
        let operands: Vec<&Word> = args
            .iter()
            .filter(|a| !(a.is_literal() && a.text.starts_with('-') && a.text != "-"))
            .collect();
        self.cwd = match operands.as_slice() {
            [dir] if dir.is_literal() && dir.text.starts_with('/') => {
                self.cwd_exact = true;
                self.cwd_unknown = false;
                Some(normalize_path(&format!("{}/", dir.text)))
            }
            // A relative directory is looked up in `CDPATH` first (which the login's
            // environment or start-up files may set: `CDPATH=/`, then `cd etc` is `/etc`), and
            // may be a link: where it lands is not known. The lexical guess is kept beside
            // the relative path (a write after `cd /etc; cd cron.d` may be `/etc/cron.d/x`).
            [dir] if dir.is_literal() && dir.text != "-" && !dir.text.starts_with('~') => {
                self.cwd_exact = false;
                self.cwd
                    .as_ref()
                    .map(|cwd| normalize_path(&format!("{cwd}/{}/", dir.text)))
            }
            // The login's home (`cd`, `cd ~/x`) is where an exec starts, so a relative write
            // there is judged as any relative one, unless the line set HOME.
            [] => {
                self.cwd_unknown |= self.home_changed;
                None
            }
            [dir] if dir.is_literal() && dir.text.starts_with('~') => {
                // `~user` is another login's home.
                let other = dir.text != "~" && !dir.text.starts_with("~/");
                self.cwd_unknown |= self.home_changed || other;
                None
            }
            // `cd -`, `popd`, `cd "$D"`: a directory known only at run time. A relative write
            // after it on this line may land anywhere, `/etc/cron.d` included.
            _ => {
                self.cwd_unknown = true;
                None
            }
        };
    }

    /// `env -C DIR`, `sudo -D DIR` and their `--chdir`.
    pub(super) fn chdir_option(&mut self, program: &str, args: &[Word]) {
        // `env -C DIR`, `sudo -D DIR`: the command runs in DIR, so its relative writes may land
        // there (kept as a guess beside the relative path, as after a relative `cd`).
        if matches!(program, "env" | "sudo") {
            let flag = if program == "env" { "-C" } else { "-D" };
            let dir = args.iter().enumerate().find_map(|(i, a)| {
                if a.text == flag || a.text == "--chdir" {
                    args.get(i + 1).cloned()
                } else {
                    a.text.strip_prefix("--chdir=").map(|v| Word {
                        text: v.to_string(),
                        ..a.clone()
                    })
                }
            });
            if let Some(d) = dir {
                self.change_directory(std::slice::from_ref(&d));
                self.cwd_exact = false;
            }
        }
    }
}
