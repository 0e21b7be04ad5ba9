//! The measuring half of `cargo xtask bench`: memloop timed under each
//! tracer in interleaved rounds, the event rate the daemon keeps up with,
//! and its initial scan. Rendering is in report.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::bpf_stats::{self, ProgCost};
use super::{ATTACH_TIMEOUT, Loop, RATE_SECS, ROUNDS_BUDGET, Tracer, bpftrace_script};
use crate::bench_support::{Daemon, Reaper, TempDir, metric, scrape, start_daemon_with, state_of};
use crate::env::output;

/// `key=value` from one of memloop's lines.
pub(super) fn field(text: &str, key: &str) -> Result<f64> {
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key}= in {text:?}"))
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Processes other than us that hold BPF programs: their tracing (if
/// attached to the same tracepoints) is in every condition, "untraced" too.
pub(super) fn other_bpf_holders() -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut holders = Vec::new();
    for entry in dir.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let progs = fds
            .flatten()
            .filter(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf-prog")
            })
            .count();
        if progs > 0 {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            holders.push(format!("{} (pid {pid}, {progs} programs)", comm.trim()));
        }
    }
    holders
}

pub(super) fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let load: Vec<String> = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect();
    format!(
        "{cpus} CPUs, Linux {}, load average {}",
        read("/proc/sys/kernel/osrelease").trim(),
        load.join(" ")
    )
}

/// Polls `path` until a line holds `needle`; fails when `alive` says the
/// writer is gone or `timeout` passes.
fn wait_for_file_line(
    path: &Path,
    needle: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l.contains(needle)) {
            return Ok(());
        }
        if !alive() {
            bail!("exited before `{needle}`: {}", text.trim());
        }
        if Instant::now() > deadline {
            bail!("no `{needle}` within {timeout:?}: {}", text.trim());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running tracer for one condition of a round.
enum Running {
    None,
    Bpftrace { pid: u32, out: PathBuf },
    Memmon { daemon: Daemon, before: String },
}

pub(super) struct Bench {
    memmon: PathBuf,
    memloop: PathBuf,
    scratch: TempDir,
    pub(super) reaper: Reaper,
    /// Start-to-ready of every daemon started in the rounds.
    pub(super) startups: Vec<Duration>,
    /// Checks that each tracer really saw the loops.
    pub(super) notes: Vec<String>,
}

impl Bench {
    pub(super) fn new(memmon: PathBuf, memloop: PathBuf, scratch: TempDir) -> Self {
        Self {
            memmon,
            memloop,
            scratch,
            reaper: Reaper::default(),
            startups: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.scratch.path().join("memmon.sock")
    }

    pub(super) fn daemon(&mut self) -> Result<Daemon> {
        self.daemon_with(&[])
    }

    fn daemon_with(&mut self, args: &[&str]) -> Result<Daemon> {
        let socket = self.socket();
        start_daemon_with(
            &mut self.reaper,
            &self.memmon,
            &socket,
            args,
            ATTACH_TIMEOUT,
        )
    }

    fn start(&mut self, tracer: Tracer) -> Result<Running> {
        if let Some(args) = tracer.daemon_args() {
            let daemon = self.daemon_with(args)?;
            self.startups.push(daemon.startup);
            let before = scrape(&daemon.metrics_url()?)?;
            return Ok(Running::Memmon { daemon, before });
        }
        Ok(match tracer {
            Tracer::None => Running::None,
            Tracer::Bpftrace | Tracer::BpftracePairs => {
                let out = self.scratch.path().join("bpftrace.out");
                let pid = self
                    .reaper
                    .spawn_bpftrace(&bpftrace_script(tracer == Tracer::BpftracePairs), &out)?;
                let alive = || state_of(pid).is_some_and(|s| s != 'Z');
                wait_for_file_line(&out, "bench: attached", ATTACH_TIMEOUT, alive)
                    .context("bpftrace did not attach")?;
                Running::Bpftrace { pid, out }
            }
            Tracer::MemmonBare | Tracer::Memmon | Tracer::MemmonStacks => {
                unreachable!("daemons are started above")
            }
        })
    }

    /// Stops the tracer and checks it counted at least `pairs` mmap pairs.
    fn stop(&mut self, running: Running, pairs: f64) -> Result<()> {
        match running {
            Running::None => {}
            Running::Bpftrace { pid, out } => {
                // SIGINT: bpftrace prints its map and exits.
                self.reaper.stop(pid, "INT");
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                let counted = text
                    .lines()
                    .find_map(|l| l.strip_prefix("@[tracepoint:syscalls:sys_exit_mmap]: "))
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                if counted < pairs {
                    self.notes.push(format!(
                        "bpftrace counted only {counted} sys_exit_mmap (expected ≥ {pairs})"
                    ));
                }
            }
            Running::Memmon { daemon, before } => {
                // Past the daemon's /metrics cache (CACHE_FOR, 1 s, in
                // memmon/src/metrics/http.rs): a round is shorter than that,
                // and a cached exposition would show no events at all.
                thread::sleep(Duration::from_millis(1200));
                let after = scrape(&daemon.metrics_url()?)?;
                let delta = |name: &str| {
                    metric(&after, name, "").unwrap_or(f64::NAN)
                        - metric(&before, name, "").unwrap_or(f64::NAN)
                };
                let (events, lost) = (
                    delta("memmon_events_total"),
                    delta("memmon_events_lost_total"),
                );
                if events.is_nan() || events < 2.0 * pairs || lost != 0.0 {
                    self.notes.push(format!(
                        "memmon saw {events} events and lost {lost} in a round (expected ≥ {:.0} and 0)",
                        2.0 * pairs
                    ));
                }
                self.reaper.stop(daemon.pid, "TERM");
            }
        }
        Ok(())
    }

    /// One memloop run: (wall ns, CPU ns) per iteration.
    fn time_loop(&self, which: Loop, iters: u64) -> Result<(f64, f64)> {
        let text = output(
            Command::new(&self.memloop)
                .arg(which.arg())
                .arg((iters * which.scale()).to_string()),
        )?;
        Ok((
            field(&text, "ns_per_iter")?,
            field(&text, "cpu_ns_per_iter")?,
        ))
    }
}

/// `samples[tracer][loop]`: (wall, cpu) ns per iteration, one per round.
pub(super) type Samples = [[Vec<(f64, f64)>; Loop::ALL.len()]; Tracer::ALL.len()];

/// `kernel[tracer]`: per round, the tracer's in-kernel ns per mmap+munmap
/// pair (bpf_stats) and the programs that make it up.
pub(super) type Kernel = [Vec<(f64, Vec<ProgCost>)>; Tracer::ALL.len()];

impl Running {
    /// The process holding the tracer's BPF programs.
    fn owner(&self) -> Option<u32> {
        match self {
            Running::None => None,
            Running::Bpftrace { pid, .. } => Some(*pid),
            Running::Memmon { daemon, .. } => Some(daemon.pid),
        }
    }
}

pub(super) fn overhead_rounds(
    bench: &mut Bench,
    iters: u64,
    rounds: usize,
) -> Result<(Samples, Kernel, usize)> {
    let mut samples: Samples = Default::default();
    let mut kernel: Kernel = Default::default();
    let n = Tracer::ALL.len();
    let started = Instant::now();
    let mut done = 0;
    for round in 0..rounds {
        if round > 0 && started.elapsed() > ROUNDS_BUDGET {
            println!("out of time for rounds after {round} of {rounds}");
            break;
        }
        let order: Vec<Tracer> = (0..n).map(|k| Tracer::ALL[(round + k) % n]).collect();
        for tracer in order {
            let running = bench.start(tracer)?;
            let owner = running.owner();
            let mut line = format!("round {} {:<20}", round + 1, tracer.name());
            for which in Loop::ALL {
                let stats = owner.filter(|_| which == Loop::Mmap);
                let before = stats.map(|_| bpf_stats::snapshot()).transpose()?;
                let (wall, cpu) = bench.time_loop(which, iters)?;
                if let (Some(owner), Some(before)) = (stats, before) {
                    // The warm-up adds a tenth.
                    let pairs = 1.1 * iters as f64;
                    let owned = bpf_stats::programs_of(owner);
                    let (per_pair, progs) =
                        bpf_stats::window(&before, &bpf_stats::snapshot()?, &owned, pairs);
                    line += &format!("  kernel {per_pair:.0} ns/pair");
                    kernel[tracer as usize].push((per_pair, progs));
                }
                samples[tracer as usize][which as usize].push((wall, cpu));
                line += &format!("  {} {cpu:.0} cpu ns ({wall:.0} wall)", which.arg());
            }
            println!("{line}");
            // The warm-up adds a tenth; the mmap loop's exits alone are 1.1 × iters.
            bench.stop(running, 1.1 * iters as f64)?;
        }
        done += 1;
    }
    Ok((samples, kernel, done))
}

/// One load of the rate test.
pub(super) struct RateRun {
    pub(super) loops: usize,
    pub(super) secs: f64,
    pub(super) events_per_sec: f64,
    pub(super) seen_per_sec: f64,
    pub(super) lost: f64,
    pub(super) cpu_percent: f64,
    pub(super) cpu_ns_per_event: f64,
    pub(super) rss_mib: f64,
}

pub(super) fn rate_run(bench: &Bench, url: &str, loops: usize) -> Result<RateRun> {
    let before = scrape(url)?;
    let started = Instant::now();
    let children: Vec<_> = (0..loops)
        .map(|_| {
            Command::new(&bench.memloop)
                .args(["mmap-for", &RATE_SECS.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .context("starting memloop")
        })
        .collect::<Result<_>>()?;
    let mut pairs = 0.0;
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("memloop mmap-for failed: {}", out.status);
        }
        pairs += field(&String::from_utf8_lossy(&out.stdout), "pairs")?;
    }
    let loops_done = started.elapsed().as_secs_f64();
    // The reader polls every 20 ms; give it time to drain what is queued.
    thread::sleep(Duration::from_millis(300));
    let after = scrape(url)?;
    let wall = started.elapsed().as_secs_f64();
    let delta = |name: &str| {
        metric(&after, name, "").unwrap_or(0.0) - metric(&before, name, "").unwrap_or(0.0)
    };
    let seen = delta("memmon_events_total");
    let cpu = delta("process_cpu_seconds_total");
    Ok(RateRun {
        loops,
        secs: loops_done,
        events_per_sec: 2.0 * pairs / loops_done,
        seen_per_sec: seen / loops_done,
        lost: delta("memmon_events_lost_total"),
        cpu_percent: 100.0 * cpu / wall,
        cpu_ns_per_event: cpu * 1e9 / seen.max(1.0),
        rss_mib: mib(metric(&after, "process_resident_memory_bytes", "").unwrap_or(f64::NAN)),
    })
}

/// VmRSS or VmHWM of `pid`, in MiB.
pub(super) fn proc_status_mib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

pub(super) struct Scan {
    pub(super) tracked: Option<u64>,
    pub(super) startup: Duration,
    /// VmRSS half a second after ready, before anything asked anything.
    pub(super) idle_rss_mib: f64,
    /// VmRSS after one /metrics scrape (Prometheus scrapes all the time).
    pub(super) rss_mib: f64,
    /// VmHWM at the end.
    pub(super) hwm_mib: f64,
}

impl Scan {
    /// Unknown values, for a report whose scan failed.
    pub(super) fn failed() -> Self {
        Self {
            tracked: None,
            startup: Duration::ZERO,
            idle_rss_mib: f64::NAN,
            rss_mib: f64::NAN,
            hwm_mib: f64::NAN,
        }
    }
}

pub(super) fn scan(bench: &mut Bench) -> Result<Scan> {
    let mut sleepers = Reaper::default();
    sleepers.spawn_idle_processes()?;
    let daemon = bench.daemon()?;
    // Whatever the daemon still settles right after ready.
    thread::sleep(Duration::from_millis(500));
    let idle_rss_mib = proc_status_mib(daemon.pid, "VmRSS");
    scrape(&daemon.metrics_url()?)?;
    let result = Scan {
        tracked: daemon.tracked(),
        startup: daemon.startup,
        idle_rss_mib,
        rss_mib: proc_status_mib(daemon.pid, "VmRSS"),
        hwm_mib: proc_status_mib(daemon.pid, "VmHWM"),
    };
    bench.reaper.stop(daemon.pid, "TERM");
    drop(sleepers);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::{field, median};

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn memloop_lines_are_parsed() {
        let line = "ns_per_iter=1234.5 cpu_ns_per_iter=1000.0 iters=200000";
        assert_eq!(field(line, "ns_per_iter").unwrap(), 1234.5);
        assert_eq!(field(line, "cpu_ns_per_iter").unwrap(), 1000.0);
        assert!(field(line, "pairs").is_err());
    }
}
