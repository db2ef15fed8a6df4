//! What proctor knows of a judged shell's state that changes what its next line does, for the
//! approval card: today its working directory, read by the SSH relay from the target's kernel
//! (`/proc/PID/cwd` of the shell) after each prompt. A relative path in a held line means
//! nothing to an approver without it (`rm -r data` in `/srv/prod` or in `/tmp/scratch`).

use std::collections::HashMap;

use super::pg_settings::Setting;

/// The card's name for the setting.
pub const WORKING_DIRECTORY: &str = "working directory";

#[derive(Debug, Default)]
pub struct ShellContexts {
    /// By channel: the directory, or why it could not be read.
    cwd: HashMap<u32, Result<String, String>>,
}

impl ShellContexts {
    /// The relay read the shell's directory (or failed to); the text to record, `None` when
    /// nothing changed.
    pub fn update(&mut self, channel: u32, cwd: Option<String>, why: &str) -> Option<String> {
        let new = cwd.ok_or_else(|| why.to_string());
        if self.cwd.get(&channel) == Some(&new) {
            return None;
        }
        let text = match &new {
            Ok(dir) => format!(
                "judged shell on channel {channel}: working directory {dir:?} (read from the target)"
            ),
            Err(why) => {
                format!("judged shell on channel {channel}: working directory unknown ({why})")
            }
        };
        self.cwd.insert(channel, new);
        Some(text)
    }

    /// The directory last read for `channel`, if it could be read.
    pub fn cwd(&self, channel: u32) -> Option<String> {
        self.cwd
            .get(&channel)
            .and_then(|c| c.as_ref().ok())
            .cloned()
    }

    /// What the card of a line on `channel` shows.
    pub fn view(&self, channel: u32) -> Vec<Setting> {
        let (value, note) = match self.cwd.get(&channel) {
            Some(Ok(dir)) => (
                dir.clone(),
                "read from the target's kernel after the shell's last prompt".to_string(),
            ),
            Some(Err(why)) => ("unknown".to_string(), why.clone()),
            None => (
                "unknown".to_string(),
                "proctor reads it only in judged shells on a terminal".to_string(),
            ),
        };
        vec![Setting {
            name: WORKING_DIRECTORY.into(),
            value,
            note,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_recorded_once_and_shown_per_channel() {
        let mut c = ShellContexts::default();
        assert_eq!(c.view(1)[0].value, "unknown");
        assert!(c.update(1, Some("/srv/prod".into()), "").is_some());
        assert!(c.update(1, Some("/srv/prod".into()), "").is_none());
        assert_eq!(c.view(1)[0].value, "/srv/prod");
        assert_eq!(c.view(2)[0].value, "unknown");
        let t = c
            .update(1, None, "the target has no /proc")
            .unwrap_or_default();
        assert!(t.contains("unknown (the target has no /proc)"), "{t}");
        assert_eq!(c.view(1)[0].note, "the target has no /proc");
    }
}
