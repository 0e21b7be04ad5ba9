//! No silent gaps: a syscall exit whose entry the kernel programs did not
//! see marks its process lost, and the daemon resyncs it from /proc, just
//! as it does after a ring-buffer loss.
//!
//! Run as root: `cargo test -p memmon --test gaps`.

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{Daemon, LineCollector, compiled, metric, require_bpf};

#[test]
fn an_exit_without_its_entry_resyncs_the_process() {
    if !require_bpf() {
        return;
    }
    let (_dir, long_calls) = compiled("long_calls", &[]);
    let mut child = Command::new(&long_calls)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn long_calls");
    let out = LineCollector::new(child.stdout.take().expect("piped stdout"));
    assert!(
        out.wait_for(|l| l.starts_with("ready"), Duration::from_secs(10))
            .is_some(),
        "long_calls did not start"
    );
    // Attached while long_calls is inside a 512 MiB mmap or munmap: that
    // call's exit has no entry. Only the kernel's report may resync it.
    let daemon = Daemon::start_with(&["--verify-interval", "0"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (unpaired, lost) = loop {
        let text = daemon.scrape();
        let unpaired = metric(&text, "memmon_unpaired_exits_total", "").unwrap_or(0.0);
        let lost = metric(&text, "memmon_resyncs_total", r#"{reason="lost"}"#).unwrap_or(0.0);
        if (unpaired >= 1.0 && lost >= 1.0) || Instant::now() > deadline {
            break (unpaired, lost);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(unpaired >= 1.0, "no unpaired exit was seen ({unpaired})");
    assert!(
        lost >= 1.0,
        "{unpaired} unpaired exit(s), but no process was resynced for it"
    );
}
