//! The one rule for tests that cannot run on this machine: skip visibly,
//! except under `CI=true`, where CI must never skip quietly.

use std::fmt::Display;
use std::io::Write as _;

/// Whether we run in CI (`CI=true`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `what` (e.g. "the eBPF tests") cannot run here, for `reason`. Prints
/// `SKIPPED: <reason>` so the caller can return; under `CI=true` it panics.
pub fn skip(what: &str, reason: impl Display) {
    if is_ci() {
        panic!("CI=true, and {what} cannot run: {reason}");
    }
    // Straight to stderr: the test harness captures eprintln!.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}
