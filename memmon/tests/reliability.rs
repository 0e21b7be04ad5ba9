//! Reliability under stress, with the real daemon and the real kernel
//! programs: event loss and recovery, and bounded memory under pid churn
//! (a crash and restart in the middle of churn is in restart.rs). The
//! tests share the machine's CPUs and the daemon's tracepoints with each
//! other, so they run one at a time ([`serial_bpf`]); cargo runs test binaries
//! one after another.
//!
//! Run as root: `cargo test -p memmon --test reliability -- --test-threads=1`
//! (about a minute).

mod support;

use std::{
    fs,
    process::{Command, Stdio},
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use support::{
    Daemon, LineCollector, Stopped, compiled, listing, metric, require_bpf, wait_stopped,
    wait_timeout,
};

/// The daemon's resident memory must stay below this under pid churn.
const RSS_BOUND_BYTES: u64 = 64 << 20;

/// One test at a time: each starts its own daemon and loads the CPUs.
/// None (after [`require_bpf`] said why) when the test cannot run here.
fn serial_bpf() -> Option<MutexGuard<'static, ()>> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    require_bpf().then_some(serial)
}

fn scrape_value(daemon: &Daemon, name: &str, labels: &str) -> f64 {
    metric(&daemon.scrape(), name, labels).unwrap_or(0.0)
}

// ---- 1. loss and recovery ------------------------------------------------------

const STORM_WORKERS: usize = 4;
/// Rounds of mmap + mprotect + munmap per worker: ~200k syscalls in all.
const STORM_ITERS: usize = 17_000;

#[test]
fn a_storm_through_a_tiny_ring_buffer_is_lost_then_resynced_to_agreement() {
    let Some(_serial) = serial_bpf() else {
        return;
    };
    let (_dir, storm) = compiled("storm", &[]);
    // No periodic verification: only the kernel's loss report may repair.
    let daemon = Daemon::start_with(&["--ringbuf-size", "4096", "--verify-interval", "0"]);
    let lost_before = scrape_value(&daemon, "memmon_events_lost_total", "");
    let resyncs_before = scrape_value(&daemon, "memmon_resyncs_total", r#"{reason="lost"}"#);

    let started = Instant::now();
    let mut run = Stopped::spawn(
        &storm,
        &[&STORM_WORKERS.to_string(), &STORM_ITERS.to_string()],
    );
    let mut stopped: Vec<(String, u32)> = Vec::new();
    for _ in 0..2 * STORM_WORKERS {
        let cp = run.next_checkpoint();
        stopped.push((cp.name.clone(), cp.num("pid") as u32));
    }
    for (_, pid) in &stopped {
        wait_stopped(*pid, Duration::from_secs(20));
    }
    let all_stopped = Instant::now();
    let storm_secs = (all_stopped - started).as_secs_f64();

    // The kernel counted what it dropped, and the daemon resynced for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (lost, resyncs) = loop {
        let text = daemon.scrape();
        let lost = metric(&text, "memmon_events_lost_total", "").unwrap_or(0.0) - lost_before;
        let resyncs = metric(&text, "memmon_resyncs_total", r#"{reason="lost"}"#).unwrap_or(0.0)
            - resyncs_before;
        if (lost > 0.0 && resyncs > 0.0) || Instant::now() >= deadline {
            break (lost, resyncs);
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        lost > 0.0,
        "a 4 KiB ring buffer lost nothing in a ~200k-syscall storm"
    );
    assert!(
        resyncs > 0.0,
        "{lost} events were lost, but memmon_resyncs_total{{reason=\"lost\"}} did not grow"
    );

    // Every stormed process, and each worker's child (whose model can only
    // come from its fork), converges on /proc within a few seconds.
    let deadline = all_stopped + Duration::from_secs(10);
    let mut times = Vec::new();
    for (what, pid) in &stopped {
        match daemon.verify_until(*pid, deadline) {
            Ok(_) => times.push(all_stopped.elapsed()),
            Err((_, report)) => daemon.verify_failed(*pid, &format!("({what})"), &report),
        }
    }
    let slowest = times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "storm: {STORM_WORKERS} workers x {STORM_ITERS} rounds (~{} syscalls) in {storm_secs:.1} s; \
         {lost} events lost, {resyncs} resyncs for loss; all {} processes agree with /proc \
         {:.2} s after the last stopped",
        STORM_WORKERS * STORM_ITERS * 3,
        stopped.len(),
        slowest.as_secs_f64()
    );

    for (_, pid) in &stopped {
        run.resume_pid(*pid);
    }
    run.finish();
}

// ---- 2. bounded memory under pid churn ----------------------------------------

/// A /proc/PID/status field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: i32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn live_processes() -> usize {
    fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count()
}

/// Pids the daemon lists with comm `comm` (`memmon ps --json --comm`).
fn listed_with_comm(daemon: &Daemon, comm: &str) -> Vec<u64> {
    listing(None, daemon.socket(), &["ps", "--json", "--comm", comm])
        .iter()
        .filter(|p| p["comm"] == comm)
        .filter_map(|p| p["pid"].as_u64())
        .collect()
}

const CHURN_SECS: u64 = 30;
/// Tracked beyond the live count once the churn is over: processes that
/// started or exited between the two reads. Models of processes whose exit
/// event was lost go within 10 s (the daemon's liveness sweep).
const TRACKED_SLACK: f64 = 8.0;
const CHURN_LANES: u32 = 3;
/// Every 16th child execs /bin/true (the rest exit at once).
const CHURN_EXEC_EVERY: u32 = 16;

#[test]
fn pid_churn_keeps_the_daemon_small_and_exited_processes_are_forgotten() {
    let Some(_serial) = serial_bpf() else {
        return;
    };
    let (_dir, forker) = compiled("forker", &[]);
    let daemon = Daemon::start();
    let pid = daemon.pid();
    let tracked_before = scrape_value(&daemon, "memmon_tracked_processes", "");
    let live_before = live_processes();
    let rss_before = status_bytes(pid, "VmRSS");
    let lost_before = scrape_value(&daemon, "memmon_events_lost_total", "");
    // The peak so far is start-up (loading the object, the first scan);
    // writing 5 to clear_refs resets VmHWM, so it then measures the churn.
    let startup_hwm = status_bytes(pid, "VmHWM");
    fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the daemon's VmHWM");

    let mut child = Command::new(&forker)
        .args([
            CHURN_SECS.to_string(),
            CHURN_LANES.to_string(),
            CHURN_EXEC_EVERY.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn forker");
    let out = LineCollector::new(child.stdout.take().expect("piped stdout"));
    let started = Instant::now();
    let mut max_rss = rss_before;
    let mut max_tracked = tracked_before;
    let status = loop {
        if let Some(status) = wait_timeout(&mut child, Duration::from_secs(1)) {
            break status;
        }
        max_rss = max_rss.max(status_bytes(pid, "VmRSS"));
        max_tracked = max_tracked.max(scrape_value(&daemon, "memmon_tracked_processes", ""));
        assert!(daemon.alive(), "the daemon died under pid churn");
        if started.elapsed() > Duration::from_secs(CHURN_SECS + 60) {
            let _ = child.kill();
            panic!(
                "forker ran {} s past its {CHURN_SECS} s",
                started.elapsed().as_secs()
            );
        }
    };
    assert!(status.success(), "forker failed: {status}");
    let lines = out.finish();
    let mut forks = 0u64;
    let mut execs = 0u64;
    let mut elapsed_ms = 0u64;
    for line in &lines {
        for word in line.split_whitespace() {
            match word.split_once('=') {
                Some(("forks", n)) => forks += n.parse::<u64>().unwrap_or(0),
                Some(("execs", n)) => execs += n.parse::<u64>().unwrap_or(0),
                Some(("elapsed_ms", n)) => elapsed_ms = n.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let rate = forks as f64 / (elapsed_ms.max(1) as f64 / 1000.0);
    let hwm = status_bytes(pid, "VmHWM");
    let lost = scrape_value(&daemon, "memmon_events_lost_total", "") - lost_before;

    // Exited processes are forgotten: none of the churn is listed, and the
    // table is back to about the number of live processes.
    let since = Instant::now();
    let (tracked_after, live_after, leftovers) = loop {
        let tracked = scrape_value(&daemon, "memmon_tracked_processes", "");
        let live = live_processes();
        let leftovers =
            listed_with_comm(&daemon, "forker").len() + listed_with_comm(&daemon, "true").len();
        if (leftovers == 0 && tracked <= live as f64 + TRACKED_SLACK)
            || since.elapsed() > Duration::from_secs(25)
        {
            break (tracked, live, leftovers);
        }
        thread::sleep(Duration::from_millis(500));
    };
    let rss_after = status_bytes(pid, "VmRSS");
    eprintln!(
        "pid churn: {forks} processes ({execs} exec'd /bin/true) in {:.1} s = {rate:.0}/s over \
         {CHURN_LANES} lanes, {lost} events lost; daemon RSS {:.1} MiB before (start-up peak {:.1} MiB), max sampled {:.1} MiB, VmHWM {:.1} MiB, \
         {:.1} MiB after (bound {} MiB); tracked {tracked_before} before ({live_before} live), \
         max {max_tracked} during, {tracked_after} after ({live_after} live), forgotten {:.1} s \
         after the churn ended",
        elapsed_ms as f64 / 1000.0,
        mib(rss_before),
        mib(startup_hwm),
        mib(max_rss),
        mib(hwm),
        mib(rss_after),
        RSS_BOUND_BYTES >> 20,
        since.elapsed().as_secs_f64()
    );
    assert!(forks > 0, "forker reported no forks: {lines:?}");
    assert!(
        hwm < RSS_BOUND_BYTES && max_rss < RSS_BOUND_BYTES,
        "daemon RSS peaked at {:.1} MiB (VmHWM) under pid churn, above the {} MiB bound",
        mib(hwm.max(max_rss)),
        RSS_BOUND_BYTES >> 20
    );
    assert_eq!(
        leftovers, 0,
        "exited churn processes are still listed by `memmon ps`"
    );
    assert!(
        tracked_after <= live_after as f64 + TRACKED_SLACK,
        "the daemon tracks {tracked_after} processes, {live_after} are alive"
    );
    assert!(daemon.alive(), "the daemon died");
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
