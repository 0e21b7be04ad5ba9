//! Calls that must answer within a limit, and the daemon's resident size.

use std::{
    fs,
    time::{Duration, Instant},
};

/// Runs `call`, failing the test if it took longer than `limit`; returns
/// what it returned and how long it took.
pub fn within<T>(limit: Duration, what: &str, call: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = call();
    let took = started.elapsed();
    assert!(
        took <= limit,
        "{what} took {took:?}, over the limit of {limit:?}"
    );
    (value, took)
}

/// VmRSS of `pid` in bytes, from /proc/PID/status.
pub fn vm_rss(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
