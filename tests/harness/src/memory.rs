//! Memory readings of a process, for tests that bound what proctor keeps per session.

/// A size field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...) in KiB; 0 when unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod proc_status_tests {
    #[test]
    fn reads_this_process_sizes() {
        let pid = std::process::id();
        let rss = super::proc_status_kib(pid, "VmRSS");
        assert!(rss > 0);
        assert!(super::proc_status_kib(pid, "VmHWM") >= rss);
        assert_eq!(super::proc_status_kib(pid, "NoSuchField"), 0);
    }
}
