//! Reliability under stress, with the real daemon and the real kernel
//! programs: event loss and recovery, a crash and restart in the middle of
//! churn (and no kernel object left behind), and bounded memory under pid
//! churn. The tests share the machine's CPUs and the daemon's tracepoints
//! with each other, so they run one at a time ([`serial`]).
//!
//! Run as root: `cargo test -p memmon --test reliability -- --test-threads=1`
//! (about a minute and a half). `bpftool` must be installed (`cargo xtask
//! setup` installs it).

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    process::{Command, Stdio},
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    Daemon, LineCollector, MEMMON, Stopped, TempDir, compile, metric, proc_state, require_bpf,
    signal, wait_stopped, wait_timeout,
};

/// The daemon's resident memory must stay below this under pid churn.
const RSS_BOUND_BYTES: u64 = 64 << 20;

/// One test at a time: each starts its own daemon and loads the CPUs.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scrape_value(daemon: &Daemon, name: &str, labels: &str) -> f64 {
    metric(&daemon.scrape(), name, labels).unwrap_or(0.0)
}

/// Polls `memmon verify PID` until it agrees; the time it took, or the
/// last report at the deadline.
fn converge(
    daemon: &Daemon,
    pid: u32,
    since: Instant,
    deadline: Instant,
) -> Result<Duration, String> {
    loop {
        let (ok, text) = daemon.verify(pid);
        if ok {
            return Ok(since.elapsed());
        }
        if Instant::now() >= deadline {
            return Err(text);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn fail_to_converge(daemon: &Daemon, pid: u32, what: &str, report: &str) -> ! {
    panic!(
        "memmon verify {pid} ({what}) never agreed:\n{report}\n--- /proc/{pid}/maps ---\n{}\
         --- daemon stderr ---\n{}",
        fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default(),
        daemon.stderr().join("\n")
    )
}

// ---- 1. loss and recovery ------------------------------------------------------

const STORM_WORKERS: usize = 4;
/// Rounds of mmap + mprotect + munmap per worker: ~200k syscalls in all.
const STORM_ITERS: usize = 17_000;

#[test]
fn a_storm_through_a_tiny_ring_buffer_is_lost_then_resynced_to_agreement() {
    let _serial = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("storm");
    let storm = compile(&dir, "storm", &[]);
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
        match converge(&daemon, *pid, all_stopped, deadline) {
            Ok(t) => times.push(t),
            Err(report) => fail_to_converge(&daemon, *pid, what, &report),
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

// ---- 2. crash and restart under churn -----------------------------------------

/// Kernel object ids (programs, maps) a process holds open, from the
/// `prog_id:`/`map_id:` lines of its /proc/PID/fdinfo entries.
#[derive(Debug, Default)]
struct BpfIds {
    progs: BTreeSet<u64>,
    maps: BTreeSet<u64>,
}

fn bpf_ids_held_by(pid: i32) -> BpfIds {
    let mut ids = BpfIds::default();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let mut parts = line.split(':');
            let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(id) = value.trim().parse() else {
                continue;
            };
            match key {
                "prog_id" => ids.progs.insert(id),
                "map_id" => ids.maps.insert(id),
                _ => false,
            };
        }
    }
    ids
}

/// `bpftool {prog|map} show --json`: id -> name (bpftool shows at most 15
/// bytes of a name).
fn bpftool_show(what: &str) -> BTreeMap<u64, String> {
    let out = Command::new("bpftool")
        .args([what, "show", "--json"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run bpftool ({e}): install it (`cargo xtask setup` does, Debian package bpftool)")
        });
    assert!(
        out.status.success(),
        "bpftool {what} show failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("bpftool prints JSON");
    list.as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|o| {
            Some((
                o["id"].as_u64()?,
                o["name"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// memmon's program names, as bpftool shows them (15 bytes).
const PROGRAMS: [&str; 7] = [
    "sys_enter_memory",
    "sys_exit_memory",
    "sys_enter_prctl",
    "sys_exit_prctl",
    "sched_process_exec",
    "sched_process_fork",
    "sched_process_exit",
];
const MAPS: [&str; 5] = ["EVENTS", "PENDING", "PENDING_NAME", "COUNTERS", "LOST_PIDS"];

fn truncated(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// Whether bpftool's `shown` name is `name`: in full (newer bpftool reads
/// program names from BTF) or cut to the kernel's 15 bytes.
fn same_name(shown: &str, name: &str) -> bool {
    shown == name || shown == truncated(name)
}

/// Of `held`, the programs and maps the kernel still lists, with names.
fn still_listed(held: &BpfIds) -> Vec<String> {
    let progs = bpftool_show("prog");
    let maps = bpftool_show("map");
    let mut left: Vec<String> = held
        .progs
        .iter()
        .filter_map(|id| progs.get(id).map(|n| format!("prog {id} {n}")))
        .collect();
    left.extend(
        held.maps
            .iter()
            .filter_map(|id| maps.get(id).map(|n| format!("map {id} {n}"))),
    );
    left
}

/// What a running daemon holds: all of memmon's programs and maps, named
/// as bpftool shows them.
fn check_held(daemon: &Daemon) -> BpfIds {
    let held = bpf_ids_held_by(daemon.pid());
    let progs = bpftool_show("prog");
    let maps = bpftool_show("map");
    let prog_names: BTreeSet<&str> = held
        .progs
        .iter()
        .filter_map(|id| progs.get(id).map(String::as_str))
        .collect();
    let map_names: BTreeSet<&str> = held
        .maps
        .iter()
        .filter_map(|id| maps.get(id).map(String::as_str))
        .collect();
    for name in PROGRAMS {
        assert!(
            prog_names.iter().any(|shown| same_name(shown, name)),
            "the daemon holds no program named {name}: {prog_names:?}"
        );
    }
    for name in MAPS {
        assert!(
            map_names.iter().any(|shown| same_name(shown, name)),
            "the daemon holds no map named {name}: {map_names:?}"
        );
    }
    held
}

/// Waits until the kernel has freed every object of `held`; how long it took.
fn wait_released(held: &BpfIds, whose: &str) -> Duration {
    let since = Instant::now();
    loop {
        let left = still_listed(held);
        if left.is_empty() {
            return since.elapsed();
        }
        if since.elapsed() > Duration::from_secs(10) {
            panic!("{whose} is gone, but the kernel still lists its objects 10 s later: {left:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Nothing of memmon's is pinned in the BPF filesystem.
fn assert_nothing_pinned() {
    let mut pinned = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("/sys/fs/bpf")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("memmon")
                || PROGRAMS
                    .iter()
                    .chain(&MAPS)
                    .any(|n| name.contains(truncated(n)))
            {
                pinned.push(path.display().to_string());
            }
        }
    }
    assert!(
        pinned.is_empty(),
        "memmon objects pinned in bpffs: {pinned:?}"
    );
}

/// Pids of process group `pgrp`, with their state letters.
fn group_members(pgrp: u32) -> Vec<(u32, char)> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the comm: state ppid pgrp ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgrp)
            && let Some(state) = proc_state(&stat)
        {
            members.push((pid, state));
        }
    }
    members
}

#[test]
fn a_daemon_killed_mid_churn_leaves_nothing_behind_and_its_successor_converges() {
    let _serial = serial();
    if !require_bpf() {
        return;
    }
    assert_nothing_pinned();
    let dir = TempDir::new("rchurn");
    let rchurn = compile(&dir, "rchurn", &[]);

    let mut first = Daemon::start();
    let held_first = check_held(&first);
    let churn = Stopped::spawn(&rchurn, &["3"]);
    let pgrp = churn.pid;
    thread::sleep(Duration::from_millis(1500));
    assert!(first.alive(), "the first daemon died under churn");
    first.kill9();
    let freed_first = wait_released(&held_first, "the kill -9'd daemon");
    assert_nothing_pinned();

    // A successor on the same socket path (the dead one's socket file is
    // still there), seeded while the churn goes on.
    let second = Daemon::start_in(first.dir(), &[]);
    let held_second = check_held(&second);
    thread::sleep(Duration::from_millis(1500));

    // Freeze the churn: every member stops where it is, between syscalls.
    assert!(
        signal(-(pgrp as i32), libc::SIGSTOP),
        "SIGSTOP to group {pgrp}"
    );
    let frozen = Instant::now();
    let members = loop {
        let members = group_members(pgrp);
        if members.iter().all(|(_, s)| matches!(s, 'T' | 'Z')) {
            break members;
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(10),
            "group {pgrp} did not stop: {members:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let stopped: Vec<u32> = members
        .iter()
        .filter(|(_, s)| *s == 'T')
        .map(|(p, _)| *p)
        .collect();
    assert!(
        stopped.len() >= 4,
        "expected the churn's top process and 3 workers stopped: {members:?}"
    );
    let deadline = frozen + Duration::from_secs(10);
    let mut slowest = Duration::ZERO;
    for &pid in &stopped {
        match converge(&second, pid, frozen, deadline) {
            Ok(t) => slowest = slowest.max(t),
            Err(report) => fail_to_converge(&second, pid, "frozen churn", &report),
        }
    }

    drop(second);
    let freed_second = wait_released(&held_second, "the SIGTERM'd daemon");
    assert_nothing_pinned();
    eprintln!(
        "restart: first daemon held {} programs / {} maps, all freed {:.2} s after kill -9; \
         {} frozen churn processes agree with /proc {:.2} s after SIGSTOP; second daemon's \
         objects freed {:.2} s after SIGTERM",
        held_first.progs.len(),
        held_first.maps.len(),
        freed_first.as_secs_f64(),
        stopped.len(),
        slowest.as_secs_f64(),
        freed_second.as_secs_f64()
    );
    drop(churn); // SIGKILL to the whole group
}

// ---- 3. bounded memory under pid churn ----------------------------------------

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
    let out = Command::new(MEMMON)
        .args(["ps", "--json", "--comm", comm, "--socket"])
        .arg(daemon.socket())
        .output()
        .expect("run memmon ps");
    assert!(
        out.status.success(),
        "memmon ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("ps --json prints JSON");
    list.as_array()
        .expect("an array")
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
    let _serial = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("forker");
    let forker = compile(&dir, "forker", &[]);
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
