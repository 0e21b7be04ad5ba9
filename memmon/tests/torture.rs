//! The torture test (issue 9): 16 processes doing a seeded random mix of
//! every layout change memmon models (tests/fixtures/torture.c), with
//! the periodic self-verification off, while two busy loops saturate the
//! CPUs. The whole process group is frozen with SIGSTOP at 20 random
//! moments; at each, every process whose threads are all stopped must
//! have a model equal to /proc/PID/maps. A process with a thread still
//! inside a system call (state R or D) is skipped.
//!
//! The seed is printed; `MEMMON_TORTURE_SEED=N` replays the same choices
//! (the interleaving with the scheduler differs run to run).
//! `MEMMON_TORTURE_HOGS=N` sets the number of busy loops (default 2).
//!
//! Run as root: `cargo test -p memmon --test torture` (about a minute).

mod support;

use std::{
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use memmon::tracker::SeedReason;
use support::{
    Daemon, Stopped, TempDir, all_threads_stopped, compile, group_members, metric, require_bpf,
    signal,
};

const WORKERS: usize = 16;
const FREEZES: usize = 20;
/// How long the group runs between freezes, at random in this range.
const RUN_MS: (u64, u64) = (200, 2000);
/// A frozen group's models must agree within this (the daemon may still
/// be working through the events of the moments before the freeze).
const SETTLE: Duration = Duration::from_secs(10);
/// The processes whose disagreements are shown in full.
const SHOWN: usize = 4;

/// The seed's own small generator (xorshift64*), for the freeze moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(2_685_821_657_736_338_717) % n
    }
}

fn seed() -> u64 {
    match std::env::var("MEMMON_TORTURE_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("MEMMON_TORTURE_SEED={text:?} is not a number")),
        Err(_) => {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_007
        }
    }
}

/// Busy loops on their own threads until dropped.
struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Hogs {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Freezes group `pgrp` and waits (up to 5 s) for it to hold still: the
/// pids whose threads are all stopped, and those skipped (with state).
fn freeze(pgrp: u32) -> (Vec<u32>, Vec<(u32, char)>) {
    assert!(signal(-(pgrp as i32), libc::SIGSTOP), "SIGSTOP to {pgrp}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let members = group_members(pgrp);
        let (stopped, other): (Vec<_>, Vec<_>) = members
            .into_iter()
            .filter(|(_, s)| *s != 'Z')
            .partition(|(pid, _)| all_threads_stopped(*pid));
        if other.is_empty() || Instant::now() >= deadline {
            return (stopped.into_iter().map(|(p, _)| p).collect(), other);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn resyncs(daemon: &Daemon) -> String {
    let text = daemon.scrape();
    let mut out: Vec<String> = SeedReason::ALL
        .iter()
        .map(|r| r.label())
        .filter_map(|r| {
            let n = metric(
                &text,
                "memmon_resyncs_total",
                &format!("{{reason=\"{r}\"}}"),
            )?;
            Some(format!("{r}={n}"))
        })
        .collect();
    for (name, metric_name) in [
        ("events_lost", "memmon_events_lost_total"),
        ("snapshots_superseded", "memmon_snapshots_superseded_total"),
    ] {
        let n = metric(&text, metric_name, "").unwrap_or(0.0);
        out.push(format!("{name}={n}"));
    }
    // The kernel programs' error paths, where any were taken.
    out.extend(
        text.lines()
            .filter_map(|l| l.strip_prefix("memmon_kernel_errors_total"))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(_, n)| n.trim() != "0")
            .map(|(labels, n)| format!("kernel_errors{labels}={}", n.trim())),
    );
    out.join(" ")
}

#[test]
fn sixteen_random_processes_agree_with_proc_at_every_freeze() {
    if !require_bpf() {
        return;
    }
    let seed = seed();
    eprintln!("torture: seed={seed} (replay: MEMMON_TORTURE_SEED={seed})");
    let hogs: usize = std::env::var("MEMMON_TORTURE_HOGS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let dir = TempDir::new("torture");
    let program = compile(&dir, "torture", &[]);
    let daemon = Daemon::start_with(&["--verify-interval", "0"]);
    let hogs_running = Hogs::start(hogs);

    let mut run = Stopped::spawn(
        &program,
        &[
            &seed.to_string(),
            &WORKERS.to_string(),
            dir.path().to_str().unwrap(),
        ],
    );
    run.next_checkpoint();
    let pgrp = run.pid;
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut checked, mut skipped, mut retried) = (0usize, 0usize, 0usize);
    let mut failures: Vec<String> = Vec::new();
    let mut failed_pids = Vec::new();
    for round in 1..=FREEZES {
        thread::sleep(Duration::from_millis(
            RUN_MS.0 + rng.below(RUN_MS.1 - RUN_MS.0),
        ));
        let (stopped, other) = freeze(pgrp);
        let workers_alive = group_members(pgrp)
            .iter()
            .filter(|(pid, s)| *s != 'Z' && parent_of(*pid) == Some(pgrp))
            .count();
        assert_eq!(
            workers_alive, WORKERS,
            "a torture worker died (its error is on stderr); seed={seed}"
        );
        skipped += other.len();
        let frozen = Instant::now();
        let deadline = frozen + SETTLE;
        let (checked_before, failed_before) = (checked, failed_pids.len());
        for pid in stopped {
            checked += 1;
            match daemon.verify_until(pid, deadline) {
                Ok(1) => {}
                Ok(_) => retried += 1,
                Err((_, report)) => {
                    // Disagreements first: a model still awaiting its
                    // snapshot says less.
                    let disagrees = report.contains("differences");
                    if disagrees && failures.len() >= SHOWN {
                        failures.retain(|f| f.contains("differences"));
                    }
                    if failures.len() < SHOWN {
                        // Who made each region (an event, or `seed`: a
                        // snapshot) and the last events say where it went wrong.
                        let pid_text = pid.to_string();
                        failures.push(format!(
                            "freeze {round}: {report}--- /proc/{pid}/maps ---\n{}\
                             --- memmon query {pid} --origins --events 256 ---\n{}",
                            fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default(),
                            daemon.run_cli(&["query", &pid_text, "--origins", "--events", "256"])
                        ));
                    }
                    failed_pids.push((round, pid));
                }
            }
        }
        eprintln!(
            "torture: freeze {round}: {} stopped processes checked in {:.2} s, {} disagreed, \
             {} skipped {other:?}",
            checked - checked_before,
            frozen.elapsed().as_secs_f64(),
            failed_pids.len() - failed_before,
            other.len()
        );
        // The last freeze holds, so the daemon's counters are read at rest.
        if round < FREEZES {
            assert!(signal(-(pgrp as i32), libc::SIGCONT), "SIGCONT to {pgrp}");
        }
    }
    drop(hogs_running);
    let summary = format!(
        "torture: seed={seed} {FREEZES} freezes in {:.1} s with {hogs} busy loops: \
         {checked} stopped processes checked ({retried} needed a retry), {skipped} skipped \
         (in a system call); resyncs: {}",
        started.elapsed().as_secs_f64(),
        resyncs(&daemon)
    );
    eprintln!("{summary}");
    assert!(
        failed_pids.is_empty(),
        "{summary}\n{} frozen processes disagreed with /proc (freeze, pid): {failed_pids:?}\n\
         replay with MEMMON_TORTURE_SEED={seed}\n{}",
        failed_pids.len(),
        failures.join("\n")
    );
    drop(run); // SIGKILL to the whole group
}

/// The parent pid of `pid`, from /proc/PID/stat.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
