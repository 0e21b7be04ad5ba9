//! No silent gaps at attach: the kernel programs trace memory syscalls at
//! their exit only, reading the arguments from the registers saved at
//! entry, so a call already in flight when they attach is seen whole. No
//! process needs a resync for it, and the model agrees with /proc.
//!
//! Run as root: `cargo test -p memmon --test gaps`.

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{Daemon, LineCollector, compiled, metric, require_bpf, signal, wait_stopped};

#[test]
fn a_call_in_flight_at_attach_is_modelled_without_a_resync() {
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
    let pid = child.id();
    let out = LineCollector::new(child.stdout.take().expect("piped stdout"));
    assert!(
        out.wait_for(|l| l.starts_with("ready"), Duration::from_secs(10))
            .is_some(),
        "long_calls did not start"
    );
    // Attached while long_calls is inside a 512 MiB mmap or munmap: that
    // call's exit is the first the programs see of it. With no periodic
    // verification, only the events can keep the model right.
    let daemon = Daemon::start_with(&["--verify-interval", "0"]);
    std::thread::sleep(Duration::from_millis(500));
    // Stopped between calls (a stop is taken on the way back to user
    // space), so /proc holds still while the model is compared.
    signal(pid as i32, libc::SIGSTOP);
    wait_stopped(pid, Duration::from_secs(10));
    let verified = daemon.verify_until(pid, Instant::now() + Duration::from_secs(5));
    let text = daemon.scrape();
    let lost = metric(&text, "memmon_resyncs_total", r#"{reason="lost"}"#).unwrap_or(0.0);
    let _ = child.kill();
    let _ = child.wait();
    if let Err((attempts, report)) = verified {
        daemon.verify_failed(pid, &format!("after attach ({attempts} attempts)"), &report);
    }
    assert_eq!(lost, 0.0, "a process was resynced for lost events");
}
