//! The Markdown report of `cargo xtask bench`: tables of what was
//! measured, then each goal with its verdict. Nothing here measures.

use std::time::Duration;

use super::measure::{Kernel, RateRun, Samples, Scan, median};
use super::{Loop, Tracer};
use crate::bench_support::IDLE_PROCESSES;

const GOAL_EVENTS_PER_SEC: f64 = 1_000_000.0;
const GOAL_RSS_MIB: f64 = 64.0;
const GOAL_SCAN_SECS: f64 = 1.0;
/// Issue 9: memmon's added cost per pair over bpftrace's, goal and stretch.
const GOAL_PAIR_RATIO: f64 = 1.0;
const STRETCH_PAIR_RATIO: f64 = 0.6;
/// ns a syscall memmon does not trace may pay (the platform floor of
/// per-syscall tracepoints is ~35 ns here).
const GOAL_UNTRACED_NS: f64 = 40.0;
const GOAL_CONSUMER_NS: f64 = 150.0;
/// The kernel program that serves every memory syscall (bpftool's name).
const EXIT_PROGRAM: &str = "sys_exit_memory";

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

/// Everything one run measured.
pub struct Report {
    pub machine: String,
    /// Other processes holding BPF programs at the start.
    pub others: Vec<String>,
    pub iters: u64,
    /// Overhead rounds done (the budget may cut them short).
    pub rounds: usize,
    pub samples: Samples,
    /// bpf_stats of each tracer's programs over the mmap loop, per round.
    pub kernel: Kernel,
    pub rates: Vec<RateRun>,
    /// The daemon's VmHWM over the rate runs, MiB.
    pub rate_hwm: f64,
    /// Start-to-ready of every daemon started in the rounds.
    pub startups: Vec<Duration>,
    pub scanned: Scan,
    /// Checks that each tracer really saw the loops.
    pub notes: Vec<String>,
}

impl Report {
    /// CPU ns per pair of `t` on loop `l`, one per round.
    fn cpu(&self, t: Tracer, l: Loop) -> Vec<f64> {
        self.samples[t as usize][l as usize]
            .iter()
            .map(|s| s.1)
            .collect()
    }

    fn wall(&self, t: Tracer, l: Loop) -> Vec<f64> {
        self.samples[t as usize][l as usize]
            .iter()
            .map(|s| s.0)
            .collect()
    }

    /// Added cost per round: traced − untraced in the same round.
    fn diffs(&self, t: Tracer, l: Loop) -> Vec<f64> {
        let base = self.cpu(Tracer::None, l);
        self.cpu(t, l)
            .iter()
            .zip(&base)
            .map(|(a, b)| a - b)
            .collect()
    }

    /// Added cost: the median over rounds of [`Report::diffs`].
    fn added(&self, t: Tracer, l: Loop) -> f64 {
        median(&self.diffs(t, l))
    }

    /// In-kernel ns per mmap+munmap pair of `t`'s programs, median over rounds.
    fn kernel_per_pair(&self, t: Tracer) -> f64 {
        median(
            &self.kernel[t as usize]
                .iter()
                .map(|k| k.0)
                .collect::<Vec<_>>(),
        )
    }

    /// `name ns/run × runs/pair` of each of `t`'s programs, medians over rounds.
    fn kernel_programs(&self, t: Tracer) -> String {
        let rounds = &self.kernel[t as usize];
        let Some((_, first)) = rounds.first() else {
            return "–".into();
        };
        let mut parts = Vec::new();
        for (i, prog) in first.iter().enumerate() {
            let same: Vec<_> = rounds
                .iter()
                .filter_map(|(_, progs)| progs.get(i))
                .filter(|p| p.name == prog.name)
                .collect();
            let ns: Vec<f64> = same.iter().map(|p| p.ns_per_run).collect();
            // Other processes' calls in one round must not set the count.
            let runs: Vec<f64> = same.iter().map(|p| p.runs_per_pair).collect();
            parts.push(format!(
                "{} {:.0} ns × {:.0}",
                prog.name,
                median(&ns),
                median(&runs)
            ));
        }
        parts.join(", ")
    }

    /// ns per run of `t`'s program `name` over the mmap loop, median
    /// over rounds.
    fn program_ns_per_run(&self, t: Tracer, name: &str) -> f64 {
        median(
            &self.kernel[t as usize]
                .iter()
                .filter_map(|(_, progs)| progs.iter().find(|p| p.name == name))
                .map(|p| p.ns_per_run)
                .collect::<Vec<_>>(),
        )
    }

    /// ns per program run of all `t`'s programs over the mmap loop (its
    /// in-kernel ns per pair over its runs per pair), median over rounds.
    fn mean_ns_per_run(&self, t: Tracer) -> f64 {
        median(
            &self.kernel[t as usize]
                .iter()
                .map(|(per_pair, progs)| {
                    per_pair / progs.iter().map(|p| p.runs_per_pair).sum::<f64>()
                })
                .collect::<Vec<_>>(),
        )
    }

    /// What each of the daemon's captures costs, beside the bpftrace
    /// anchor of the same run.
    fn print_captures(&self) {
        println!(
            "| capture (same run) | in-kernel ns per program run (bpf_stats, median) | added CPU ns per mmap+munmap pair (median) | over no call sites |"
        );
        println!("| --- | --- | --- | --- |");
        println!(
            "| {} (anchor: mean over its programs) | {:.0} | {:+.0} | – |",
            Tracer::Bpftrace.name(),
            self.mean_ns_per_run(Tracer::Bpftrace),
            self.added(Tracer::Bpftrace, Loop::Mmap)
        );
        let run = |t| self.program_ns_per_run(t, EXIT_PROGRAM);
        let (base_run, base_added) = (
            run(Tracer::MemmonBare),
            self.added(Tracer::MemmonBare, Loop::Mmap),
        );
        for t in Tracer::MEMMONS {
            let over = if t == Tracer::MemmonBare {
                "–".to_owned()
            } else {
                format!(
                    "{:+.0} ns/run, {:+.0} ns/pair",
                    run(t) - base_run,
                    self.added(t, Loop::Mmap) - base_added
                )
            };
            println!(
                "| {} | {EXIT_PROGRAM} {:.0} | {:+.0} | {over} |",
                t.name(),
                run(t),
                self.added(t, Loop::Mmap)
            );
        }
    }

    /// The median start-to-ready of the daemons in the rounds, seconds.
    fn baseline(&self) -> f64 {
        median(
            &self
                .startups
                .iter()
                .map(Duration::as_secs_f64)
                .collect::<Vec<_>>(),
        )
    }

    pub fn print(&self) {
        self.print_tables();
        self.print_goals();
    }

    fn print_tables(&self) {
        let Report {
            machine,
            others,
            iters,
            rounds: done,
            rates,
            rate_hwm,
            startups,
            scanned,
            ..
        } = self;
        let baseline = self.baseline();
        println!("\n# memmon overhead benchmark");
        println!("machine: {machine}; {done} rounds of {iters} pairs, order rotated each round");
        if others.is_empty() {
            println!("no other process held BPF programs at the start");
        } else {
            println!(
                "NOTE: other processes held BPF programs at the start (their cost is in every row, untraced too): {}",
                others.join(", ")
            );
        }
        println!();
        println!(
            "| loop | condition | CPU ns/pair (median) | × untraced | added CPU ns/pair (median, range over rounds) | wall ns/pair (median) |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        for l in Loop::ALL {
            let base = median(&self.cpu(Tracer::None, l));
            for t in Tracer::ALL {
                let m = median(&self.cpu(t, l));
                let add = if t == Tracer::None {
                    "–".to_owned()
                } else {
                    let d = self.diffs(t, l);
                    let lo = d.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    format!("{:+.0} ({lo:+.0} … {hi:+.0})", self.added(t, l))
                };
                println!(
                    "| {} | {} | {m:.0} | {:.2} | {add} | {:.0} |",
                    l.name(),
                    t.name(),
                    m / base,
                    median(&self.wall(t, l))
                );
            }
        }
        println!();
        println!(
            "| tracer | in-kernel ns per mmap+munmap pair (bpf_stats, median) | × bpftrace enter+exit | programs that ran per pair: ns/run (median) × runs |"
        );
        println!("| --- | --- | --- | --- |");
        let reference = self.kernel_per_pair(Tracer::BpftracePairs);
        for t in Tracer::ALL.into_iter().filter(|t| *t != Tracer::None) {
            let k = self.kernel_per_pair(t);
            println!(
                "| {} | {k:.0} | {:.2} | {} |",
                t.name(),
                k / reference,
                self.kernel_programs(t)
            );
        }
        println!();
        self.print_captures();
        println!();
        println!(
            "| load (daemon, default 4 MiB ring) | loop events/s | all events/s the daemon saw | lost | daemon CPU | daemon CPU ns/event | daemon RSS |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for r in rates {
            println!(
                "| {} mmap loop{} flat out, {:.1} s | {:.0} | {:.0} | {} | {:.0}% | {:.0} | {:.1} MiB |",
                r.loops,
                if r.loops == 1 { "" } else { "s" },
                r.secs,
                r.events_per_sec,
                r.seen_per_sec,
                r.lost,
                r.cpu_percent,
                r.cpu_ns_per_event,
                r.rss_mib
            );
        }
        println!("(daemon peak RSS over the rate runs, VmHWM: {rate_hwm:.1} MiB)");
        println!();
        println!(
            "| daemon start → ready | processes tracked | time | RSS at ready | RSS after 1st scrape | peak RSS |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        println!(
            "| baseline (median of {} starts in the rounds) | – | {baseline:.2} s | – | – | – |",
            startups.len()
        );
        println!(
            "| with {IDLE_PROCESSES} more idle `sleep` | {} | {:.2} s | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            scanned.tracked.map_or("?".into(), |n| n.to_string()),
            scanned.startup.as_secs_f64(),
            scanned.idle_rss_mib,
            scanned.rss_mib,
            scanned.hwm_mib
        );
    }

    fn print_goals(&self) {
        let Report {
            rates,
            scanned,
            notes,
            ..
        } = self;
        let baseline = self.baseline();
        let memmon_added = self.added(Tracer::Memmon, Loop::Mmap);
        let bpftrace_added = self.added(Tracer::Bpftrace, Loop::Mmap);
        let pairs_added = self.added(Tracer::BpftracePairs, Loop::Mmap);
        let untraced_added = self.added(Tracer::Memmon, Loop::Getpid);
        let bpftrace_untraced = self.added(Tracer::BpftracePairs, Loop::Getpid);
        let zero_loss = rates.iter().filter(|r| r.lost == 0.0);
        let best = zero_loss.map(|r| r.events_per_sec).fold(0.0_f64, f64::max);
        let scan_secs = scanned.startup.as_secs_f64();
        println!();
        println!("| goal | result | verdict |");
        println!("| --- | --- | --- |");
        // Rounds in which tracing "saved" time mean the noise exceeds the effect.
        let straddles = |t: Tracer| self.diffs(t, Loop::Mmap).iter().any(|d| *d <= 0.0);
        let overhead_verdict = |reference: Tracer, ratio: f64| {
            if straddles(Tracer::Memmon) || straddles(reference) {
                "INCONCLUSIVE (some rounds ran faster traced: noise ≥ effect)".to_owned()
            } else if ratio <= STRETCH_PAIR_RATIO {
                format!("MET (stretch ≤ {STRETCH_PAIR_RATIO} too)")
            } else {
                verdict(ratio <= GOAL_PAIR_RATIO).to_owned()
            }
        };
        for (reference, added, what) in [
            (
                Tracer::BpftracePairs,
                pairs_added,
                "on enter+exit of the same syscalls",
            ),
            (
                Tracer::Bpftrace,
                bpftrace_added,
                "on exactly memmon's tracepoints",
            ),
        ] {
            let ratio = memmon_added / added;
            println!(
                "| memmon's added cost per mmap+munmap pair ≤ bpftrace count() {what} (ratio ≤ {GOAL_PAIR_RATIO}, stretch ≤ {STRETCH_PAIR_RATIO}) | {memmon_added:+.0} ns vs {added:+.0} ns: ratio {ratio:.2} | {} |",
                overhead_verdict(reference, ratio)
            );
        }
        println!(
            "| untraced syscall (getpid) +≤ {GOAL_UNTRACED_NS:.0} ns under memmon | {untraced_added:+.1} ns (bpftrace enter+exit: {bpftrace_untraced:+.1} ns) | {} |",
            verdict(untraced_added <= GOAL_UNTRACED_NS)
        );
        if let Some(one) = rates.first() {
            println!(
                "| daemon CPU ≤ {GOAL_CONSUMER_NS:.0} ns per event | {:.0} ns/event at {:.0} events/s | {} |",
                one.cpu_ns_per_event,
                one.seen_per_sec,
                verdict(one.cpu_ns_per_event <= GOAL_CONSUMER_NS)
            );
        }
        let max_rate = rates
            .iter()
            .map(|r| r.events_per_sec)
            .fold(0.0_f64, f64::max);
        let lost: f64 = rates.iter().map(|r| r.lost).sum();
        println!(
            "| 0 lost over {}-s runs at the highest rate this machine generates, default 4 MiB ring | {lost} lost, highest rate {max_rate:.0} events/s | {} |",
            super::RATE_SECS,
            verdict(lost == 0.0 && !rates.is_empty())
        );
        println!(
            "| zero loss at 1,000,000 events/s for 10 s | highest zero-loss rate reached: {best:.0} events/s{} | {} |",
            if best < GOAL_EVENTS_PER_SEC {
                " (the loops could not generate 1,000,000/s here)"
            } else {
                ""
            },
            verdict(best >= GOAL_EVENTS_PER_SEC)
        );
        println!(
            "| daemon RSS ≤ {GOAL_RSS_MIB:.0} MiB with {IDLE_PROCESSES} processes | {:.1} MiB scraped ({:.1} at ready, peak {:.1}) | {} |",
            scanned.rss_mib,
            scanned.idle_rss_mib,
            scanned.hwm_mib,
            verdict(scanned.rss_mib <= GOAL_RSS_MIB)
        );
        println!(
            "| initial scan < {GOAL_SCAN_SECS:.0} s | start → ready {scan_secs:.2} s (baseline {baseline:.2} s) | {} |",
            verdict(scan_secs < GOAL_SCAN_SECS)
        );
        for note in notes {
            println!("check: {note}");
        }
    }
}
