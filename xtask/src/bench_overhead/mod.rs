//! `cargo xtask bench`: what tracing costs the traced, against the release
//! daemon and against bpftrace counting the same tracepoints, in one run.
//!
//! 1. Overhead: xtask/bench/memloop.c times mmap+munmap pairs, brk
//!    up+down pairs and getpid calls (traced by no one: the floor every
//!    other syscall pays) untraced, under bpftrace and under the daemon, in
//!    interleaved rounds (the order rotates each round); the medians over
//!    rounds are compared. bpftrace runs twice: count() on exactly memmon's
//!    tracepoints, and on the enter+exit pairs of the same syscalls (what
//!    seeing arguments and results takes without saved registers). The
//!    daemon runs with call sites off, with them on (its default), and
//!    with full user stacks too: what each capture costs. With
//!    `kernel.bpf_stats_enabled=1`, each tracer's programs' ns per run
//!    over the mmap loop come from `bpftool prog show`.
//! 2. Event rate: the mmap loop flat out for 10 s, one copy then two,
//!    under the daemon; events/s reached, the daemon's loss counter, CPU
//!    and RSS from its /metrics.
//! 3. Initial scan: the daemon's start-to-ready time with 1,000 more idle
//!    processes, and its RSS with them.
//!
//! Missed goals are reported, not failed: the exit code is non-zero only
//! when something could not be run. Everything started is stopped again.

mod bpf_stats;
mod measure;
mod report;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::bench_support::{IDLE_PROCESSES, TempDir};
use crate::env::{cargo, describe, is_root, repo_root, run, target_dir};
use crate::setup::setup;
use measure::{
    Bench, machine, other_bpf_holders, overhead_rounds, proc_status_mib, rate_run, scan,
};
use report::Report;

/// Time for the interleaved rounds; rounds left when it runs out are skipped.
const ROUNDS_BUDGET: Duration = Duration::from_secs(180);
/// How long a tracer may take to attach (bpftrace compiles with LLVM).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
const RATE_SECS: u32 = 10;

/// bpftrace's count() on memmon's tracepoints (from its attach plan), and
/// with `enter_too` on each traced syscall's sys_enter as well.
fn bpftrace_script(enter_too: bool) -> String {
    let probes: Vec<String> = memmon_common::tracepoints::all_tracepoints()
        .flat_map(|tp| {
            let enter = tp
                .name
                .strip_prefix("sys_exit_")
                .filter(|_| enter_too)
                .map(|name| format!("tracepoint:{}:sys_enter_{name}", tp.category));
            enter
                .into_iter()
                .chain([format!("tracepoint:{}:{}", tp.category, tp.name)])
        })
        .collect();
    // BEGIN fires once every probe is attached.
    format!(
        "BEGIN {{ printf(\"bench: attached\\n\"); }} {} {{ @[probe] = count(); }}",
        probes.join(",")
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tracer {
    None,
    /// count() on exactly memmon's tracepoints.
    Bpftrace,
    /// count() on sys_enter and sys_exit of the same syscalls.
    BpftracePairs,
    /// The daemon with `--no-call-sites`.
    MemmonBare,
    /// The daemon as configured by default (call sites on).
    Memmon,
    /// The daemon with `--stacks` (call sites and full user stacks).
    MemmonStacks,
}

impl Tracer {
    const ALL: [Tracer; 6] = [
        Tracer::None,
        Tracer::Bpftrace,
        Tracer::BpftracePairs,
        Tracer::MemmonBare,
        Tracer::Memmon,
        Tracer::MemmonStacks,
    ];

    /// The daemon's captures, cheapest first, for the capture table.
    const MEMMONS: [Tracer; 3] = [Tracer::MemmonBare, Tracer::Memmon, Tracer::MemmonStacks];

    fn name(self) -> &'static str {
        match self {
            Tracer::None => "untraced",
            Tracer::Bpftrace => "bpftrace same tps",
            Tracer::BpftracePairs => "bpftrace enter+exit",
            Tracer::MemmonBare => "memmon no call sites",
            Tracer::Memmon => "memmon daemon",
            Tracer::MemmonStacks => "memmon + stacks",
        }
    }

    /// Flags of the daemon this condition runs (None: not a daemon).
    fn daemon_args(self) -> Option<&'static [&'static str]> {
        match self {
            Tracer::MemmonBare => Some(&["--no-call-sites"]),
            Tracer::Memmon => Some(&[]),
            Tracer::MemmonStacks => Some(&["--stacks"]),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Loop {
    Mmap,
    Brk,
    Getpid,
}

impl Loop {
    const ALL: [Loop; 3] = [Loop::Mmap, Loop::Brk, Loop::Getpid];

    fn arg(self) -> &'static str {
        match self {
            Loop::Mmap => "mmap",
            Loop::Brk => "brk",
            Loop::Getpid => "getpid",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Loop::Mmap => "mmap+munmap",
            Loop::Brk => "brk up+down",
            Loop::Getpid => "getpid (untraced syscall)",
        }
    }

    /// Iterations per `--iters`: a getpid is ~30x cheaper than a pair.
    fn scale(self) -> u64 {
        match self {
            Loop::Getpid => 20,
            _ => 1,
        }
    }
}

pub fn bench(iters: u64, rounds: usize, memmon: Option<std::path::PathBuf>) -> Result<()> {
    if !is_root()? {
        bail!("bench loads eBPF programs (memmon's and bpftrace's): run it as root");
    }
    if rounds == 0 || iters == 0 {
        bail!("--rounds and --iters must be positive");
    }
    setup()?;
    let memmon = match memmon {
        Some(path) => {
            println!("memmon: {} (given, not built)", path.display());
            path
        }
        None => {
            run(cargo()?.args(["build", "--release", "-p", "memmon", "--bins"]))?;
            target_dir().join("release").join("memmon")
        }
    };
    let started = Instant::now();
    let scratch = TempDir::create("bench-overhead")?;
    let memloop = scratch.path().join("memloop");
    run(Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&memloop)
        .arg(repo_root().join("xtask/bench/memloop.c")))?;
    let mut bench = Bench::new(memmon, memloop, scratch);

    let machine = machine();
    let others = other_bpf_holders();
    println!("machine: {machine}");
    for enter_too in [false, true] {
        println!(
            "bpftrace script: {}",
            describe(
                Command::new("bpftrace")
                    .arg("-e")
                    .arg(bpftrace_script(enter_too))
            )
        );
    }

    println!("\n== overhead: {rounds} interleaved rounds of {iters} pairs per loop ==");
    let stats_on = bpf_stats::StatsOn::enable();
    if let Err(e) = &stats_on {
        bench
            .notes
            .push(format!("could not enable kernel.bpf_stats_enabled: {e}"));
    }
    let (samples, kernel, done) = overhead_rounds(&mut bench, iters, rounds)?;
    drop(stats_on);

    println!("\n== event rate: the mmap loop flat out for {RATE_SECS} s under the daemon ==");
    let daemon = bench.daemon()?;
    let url = daemon.metrics_url()?;
    let mut rates = Vec::new();
    for loops in [1, 2] {
        let r = rate_run(&bench, &url, loops)?;
        println!(
            "{loops} loop(s): {:.0} events/s, daemon saw {:.0}/s, lost {}, CPU {:.0}%, RSS {:.1} MiB",
            r.events_per_sec, r.seen_per_sec, r.lost, r.cpu_percent, r.rss_mib
        );
        rates.push(r);
    }
    let rate_hwm = proc_status_mib(daemon.pid, "VmHWM");
    bench.reaper.stop(daemon.pid, "TERM");

    println!("\n== initial scan: {IDLE_PROCESSES} more idle processes ==");
    // A failed scan still leaves the measurements above to report.
    let scanned = scan(&mut bench).unwrap_or_else(|e| {
        bench.notes.push(format!("the initial scan failed: {e:#}"));
        measure::Scan::failed()
    });

    Report {
        machine,
        others,
        iters,
        rounds: done,
        samples,
        kernel,
        rates,
        rate_hwm,
        startups: std::mem::take(&mut bench.startups),
        scanned,
        notes: std::mem::take(&mut bench.notes),
    }
    .print();
    drop(bench);
    println!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bpftrace_script;

    #[test]
    fn the_pairs_script_adds_the_entries() {
        let s = bpftrace_script(true);
        assert!(
            s.contains("tracepoint:syscalls:sys_enter_mmap,tracepoint:syscalls:sys_exit_mmap,")
        );
        assert!(s.contains("tracepoint:syscalls:sys_enter_prctl,"));
        assert!(!s.contains("sys_enter_clone"));
        // Enter and exit of the memory syscalls and prctl; exec, exit and
        // the mmap lock once.
        let syscalls = memmon_common::tracepoints::MEMORY_SYSCALLS.len() + 1;
        assert_eq!(s.matches("tracepoint:").count(), 2 * syscalls + 3, "{s}");
    }

    #[test]
    fn the_script_covers_memmons_tracepoints() {
        let s = bpftrace_script(false);
        for tp in [
            "syscalls:sys_exit_mmap,",
            "syscalls:sys_exit_munmap,",
            "syscalls:sys_exit_brk,",
            "syscalls:sys_exit_mremap,",
            "sched:sched_process_exit,",
        ] {
            assert!(s.contains(tp), "{tp} missing from {s}");
        }
        for tp in memmon_common::tracepoints::all_tracepoints() {
            let probe = format!("tracepoint:{}:{}", tp.category, tp.name);
            assert_eq!(
                s.matches(&format!("{probe},")).count() + s.matches(&format!("{probe} ")).count(),
                1,
                "{probe} in {s}"
            );
        }
        assert_eq!(
            s.matches("tracepoint:").count(),
            memmon_common::tracepoints::all_tracepoints().count(),
            "{s}"
        );
    }
}
