//! Shared helpers for the root integration tests: they run the real
//! `memmon` binary, which loads the real eBPF programs, against small C
//! fixtures compiled with `cc` at test time. One module per concern; what
//! xtask's benchmarks need too is in memmon-testkit.
//!
//! Every test file uses a different subset of these helpers (hence the
//! allows on dead code and on the re-exports).
#![allow(dead_code)]

mod client;
mod daemon;
mod fidelity;
mod fixtures;
mod frames;
mod maps;
mod process;
mod stopped;
mod timing;
mod trace;
mod user;

use std::{
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

#[allow(unused_imports)]
pub use client::{
    QueryMe, Run, check_ps_entry, entry_for, fixture, free_pid, hex, listing, memmon, query_json,
    region_at,
};
#[allow(unused_imports)]
pub use daemon::Daemon;
#[allow(unused_imports)]
pub use fidelity::assert_agrees;
#[allow(unused_imports)]
pub use fixtures::{TempDir, compile, compiled, fixture_source};
#[allow(unused_imports)]
pub use frames::{connect, error_kind, exchange, frame, raw_frame, read_reply};
#[allow(unused_imports)]
pub use maps::{maps_line_at, maps_line_containing, maps_of, maps_range};
#[allow(unused_imports)]
pub use memmon_testkit::{DAEMON_READY_LINE, metric, proc_state, skip, state_of};
#[allow(unused_imports)]
pub use process::{LineCollector, output_text, run_to_end, signal, wait_timeout};
#[allow(unused_imports)]
pub use stopped::{
    Checkpoint, STOP_TIMEOUT, Stopped, all_threads_stopped, group_members, wait_stopped,
};
#[allow(unused_imports)]
pub use timing::{vm_rss, within};
#[allow(unused_imports)]
pub use trace::{Summary, TRACING_LINE, Trace, TraceOutput, brief};
#[allow(unused_imports)]
pub use user::{TEST_USER, TestUser, group_daemon, sh, spawn_as_user, test_user};

/// The binary under test.
pub const MEMMON: &str = env!("CARGO_BIN_EXE_memmon");

/// Loading and attaching takes a few seconds on a busy machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

// ---- skipping: the rule itself is memmon_testkit::skip ---------------------

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the real eBPF programs can be loaded here. When they cannot, the
/// test should return at once: this prints a visible `SKIPPED: <reason>`
/// line. Under `CI=true` it panics instead, so CI never skips quietly.
pub fn require_bpf() -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    match PROBE.get_or_init(probe_bpf) {
        Ok(()) => true,
        Err(reason) => {
            skip("the eBPF tests", reason);
            false
        }
    }
}

/// [`require_bpf`], then the daemon shared by the whole test binary; None
/// means the test should return at once.
pub fn shared_daemon() -> Option<&'static Daemon> {
    require_bpf().then(Daemon::shared)
}

fn probe_bpf() -> Result<(), String> {
    if !is_root() {
        return Err("not root: these tests load eBPF programs (run them as root)".into());
    }
    // A comm no task has: the probe only needs the programs to attach.
    let mut child = Command::new(MEMMON)
        .args(["trace", "--comm", "memmon-no-such"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {MEMMON}: {e}"))?;
    let lines = LineCollector::new(child.stderr.take().expect("piped stderr"));
    let ready = lines.wait_for(|l| l.contains(TRACING_LINE), START_TIMEOUT);
    signal(child.id() as i32, libc::SIGINT);
    let _ = wait_timeout(&mut child, Duration::from_secs(20)).or_else(|| {
        let _ = child.kill();
        child.wait().ok()
    });
    if ready.is_some() {
        Ok(())
    } else {
        Err(format!(
            "`memmon trace` could not load its eBPF programs: {}",
            lines.all().join(" | ")
        ))
    }
}
