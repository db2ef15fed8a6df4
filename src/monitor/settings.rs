//! `[monitor]`: which detectors run, their thresholds, and what each does besides alerting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Response;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Destructive actions within `burst_window` that make a burst.
    #[serde(default = "d_burst_count")]
    pub burst_count: u32,
    #[serde(default = "d_burst_window", with = "humantime_serde")]
    pub burst_window: Duration,
    #[serde(default)]
    pub burst_action: Response,
    #[serde(default = "d_true")]
    pub first_use: bool,
    #[serde(default)]
    pub first_use_action: Response,
    /// Tables whose first use is not worth an alert (`*` matches any run of characters, case
    /// is ignored). Defaults to the system catalogs every driver and `psql \d` read.
    #[serde(default = "d_first_use_ignore_tables")]
    pub first_use_ignore_tables: Vec<String>,
    /// Programs whose first use is not worth an alert: by default, utilities that only look
    /// (`ls`, `cat`, `grep`...). Setting the list replaces the default.
    #[serde(default = "d_first_use_ignore_programs")]
    pub first_use_ignore_programs: Vec<String>,
    #[serde(default = "d_egress_rows")]
    pub egress_rows: u64,
    #[serde(default = "d_egress_bytes")]
    pub egress_bytes: u64,
    #[serde(default)]
    pub egress_action: Response,
    #[serde(default)]
    pub outside_hours_action: Response,
    /// Longer table or program names are kept (baseline, memory, alerts) as their start and a
    /// SHA-256 of the whole name, so one name cannot cost more than this.
    #[serde(default = "d_first_use_name_bytes")]
    pub first_use_name_bytes: usize,
    /// Items of one action checked against the baseline; the rest are counted in the alert
    /// as not checked (a statement naming 87,000 tables costs 1,000 look-ups, not 87,000).
    #[serde(default = "d_first_use_per_action")]
    pub first_use_per_action: usize,
    /// Baseline entries one agent may add per proctor run; past it first uses still alert
    /// but are no longer stored.
    #[serde(default = "d_first_use_per_agent")]
    pub first_use_per_agent: u64,
    /// Names quoted in one collapsed first-use alert.
    #[serde(default = "d_first_use_examples")]
    pub first_use_examples: usize,
}

fn d_burst_count() -> u32 {
    10
}
fn d_burst_window() -> Duration {
    Duration::from_secs(60)
}
fn d_true() -> bool {
    true
}
fn d_first_use_ignore_tables() -> Vec<String> {
    // Unqualified `pg_*` names resolve to pg_catalog first (it leads every search_path).
    ["pg_catalog.*", "information_schema.*", "pg_*"]
        .map(String::from)
        .to_vec()
}
fn d_first_use_ignore_programs() -> Vec<String> {
    "ls cat echo printf pwd cd true false test [ head tail wc grep egrep fgrep zgrep sort uniq \
     cut tr date whoami id hostname uname env printenv which type command stat file df du free \
     uptime ps less more sleep basename dirname realpath readlink diff cmp md5sum sha256sum tty \
     locale clear exit set export unset read"
        .split_whitespace()
        .map(String::from)
        .collect()
}
fn d_first_use_name_bytes() -> usize {
    256
}
fn d_first_use_per_action() -> usize {
    1000
}
fn d_first_use_per_agent() -> u64 {
    10_000
}
fn d_first_use_examples() -> usize {
    5
}
fn d_egress_rows() -> u64 {
    100_000
}
fn d_egress_bytes() -> u64 {
    256 * 1024 * 1024
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            burst_count: d_burst_count(),
            burst_window: d_burst_window(),
            burst_action: Response::Alert,
            first_use: true,
            first_use_action: Response::Alert,
            first_use_ignore_tables: d_first_use_ignore_tables(),
            first_use_ignore_programs: d_first_use_ignore_programs(),
            egress_rows: d_egress_rows(),
            egress_bytes: d_egress_bytes(),
            egress_action: Response::Alert,
            outside_hours_action: Response::Alert,
            first_use_name_bytes: d_first_use_name_bytes(),
            first_use_per_action: d_first_use_per_action(),
            first_use_per_agent: d_first_use_per_agent(),
            first_use_examples: d_first_use_examples(),
        }
    }
}

mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        humantime::parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
