//! The kernel programs log their error paths with aya-log, at debug level
//! and only then: under `RUST_LOG=debug`, a prctl(PR_SET_VMA_ANON_NAME)
//! whose name pointer points nowhere makes the exit program's read fail,
//! and `memmon trace` prints the kernel's record through its logger;
//! at the default level it prints none.
//!
//! Run as root: `cargo test -p memmon --test kernel_log`.

mod support;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use memmon_common::counter::READ_VMA_NAME;
use support::{
    LineCollector, MEMMON, START_TIMEOUT, TRACING_LINE, require_bpf, signal, wait_timeout,
};

/// Runs `memmon trace` with `RUST_LOG=level` around a prctl that fails,
/// and returns its stderr.
fn trace_a_failed_read(level: &str) -> Vec<String> {
    let mut child = Command::new(MEMMON)
        .args(["trace", "--comm", "memmon-no-such"])
        .env("RUST_LOG", level)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn memmon trace");
    let stderr = LineCollector::new(child.stderr.take().unwrap());
    assert!(
        stderr
            .wait_for(|l| l.contains(TRACING_LINE), START_TIMEOUT)
            .is_some(),
        "memmon trace never attached: {:?}",
        stderr.all()
    );
    const PR_SET_VMA: libc::c_int = 0x5356_4d41;
    // SAFETY: prctl only fails on the unmapped range and the bad name
    // pointer (nothing is written); the other arguments are integers.
    let ret = unsafe { libc::prctl(PR_SET_VMA, 0, 0x10000usize, 4096usize, 8usize) };
    assert_eq!(ret, -1, "prctl with a bad name pointer should fail");
    // The log's ring buffer is polled as it fills; give it a moment.
    let want = format!("kernel error in slot {READ_VMA_NAME} ");
    stderr.wait_for(|l| l.contains(&want), Duration::from_secs(3));
    signal(child.id() as i32, libc::SIGINT);
    wait_timeout(&mut child, Duration::from_secs(30)).expect("memmon trace stops on SIGINT");
    stderr.finish()
}

#[test]
fn kernel_error_paths_log_at_debug_only() {
    if !require_bpf() {
        return;
    }
    let want = format!("kernel error in slot {READ_VMA_NAME} ");
    let debug = trace_a_failed_read("debug");
    assert!(
        debug
            .iter()
            .any(|l| l.contains(&want) && l.contains("DEBUG")),
        "no debug record of the failed read ({want:?}) in {debug:#?}"
    );
    let quiet = trace_a_failed_read("warn");
    assert!(
        !quiet.iter().any(|l| l.contains("kernel error in slot")),
        "kernel records at the default level: {quiet:#?}"
    );
}
