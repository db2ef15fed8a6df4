//! Wall-clock time as Unix nanoseconds, the unit of every recorded timestamp.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// RFC 3339 with nanoseconds, UTC.
pub fn format_ns(ns: i64) -> String {
    if ns < 0 {
        return format!("{ns}ns");
    }
    let t = UNIX_EPOCH + Duration::from_nanos(ns as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Seconds precision, for tables.
pub fn format_ns_short(ns: i64) -> String {
    if ns < 0 {
        return format!("{ns}ns");
    }
    let t = UNIX_EPOCH + Duration::from_nanos(ns as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses `2026-11-23T10:00:00Z`, `2026-11-23 10:00:00`, `2026-11-23`, or a duration ago
/// such as `2h` / `7days`.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return to_ns(t);
    }
    if s.len() == 10
        && let Ok(t) = humantime::parse_rfc3339_weak(&format!("{s} 00:00:00"))
    {
        return to_ns(t);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let t = SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{s}: too far in the past"))?;
        return to_ns(t);
    }
    Err(format!(
        "{s}: expected a time like 2026-11-23T10:00:00Z, a date, or a duration ago like 2h"
    ))
}

fn to_ns(t: SystemTime) -> Result<i64, String> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .map_err(|e| e.to_string())
}

/// The one place retention periods become instants: `from_ns + period`, saturating at the end
/// of representable time (a period of centuries means "never", not a wrapped, past instant
/// that would make a session purgeable at once).
pub fn after(from_ns: i64, period: std::time::Duration) -> i64 {
    from_ns.saturating_add(i64::try_from(period.as_nanos()).unwrap_or(i64::MAX))
}

/// `from_ns - period`, saturating at the start of representable time.
pub fn before(from_ns: i64, period: std::time::Duration) -> i64 {
    from_ns.saturating_sub(i64::try_from(period.as_nanos()).unwrap_or(i64::MAX))
}
