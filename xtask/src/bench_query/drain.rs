//! The longest gap between two ring-buffer drains while clients query a
//! large process in a loop and an mmap loop keeps events coming. The
//! daemon's `memmon_drain_gap_max_seconds` is the longest since the
//! previous scrape that read it, and `memmon_ring_wait_max_seconds` the
//! longest a record waited in the ring (its kernel timestamp to the drain
//! that read it: loop work and CPU starvation alike). The exposition is
//! cached for 1 s, so each window is a little longer than that and starts
//! with a fresh scrape.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::latency::{Tool, time_once};
use super::sched::{self, SchedStat};
use crate::bench_support::{Reaper, metric, scrape};

/// Past the daemon's 1 s exposition cache, so every scrape is fresh.
const WINDOW: Duration = Duration::from_millis(1_100);

pub(super) struct DrainGaps {
    /// The longest gap of each window, in seconds.
    pub windows: Vec<f64>,
    /// The longest ring wait of each window, in seconds.
    pub ring_waits: Vec<f64>,
    /// The loop thread's CPU time and run-queue wait in each window.
    pub loop_sched: Vec<SchedStat>,
    /// Each window's wall time.
    pub walls: Vec<Duration>,
    pub queries: u64,
    pub events: f64,
    pub lost: f64,
}

struct Reading {
    gap: f64,
    ring_wait: f64,
    events: f64,
    lost: f64,
}

fn read(url: &str) -> Result<Reading> {
    let text = scrape(url)?;
    let value = |name: &str| metric(&text, name, "").with_context(|| format!("no {name}"));
    Ok(Reading {
        gap: value("memmon_drain_gap_max_seconds")?,
        ring_wait: value("memmon_ring_wait_max_seconds")?,
        events: value("memmon_events_total")?,
        lost: value("memmon_events_lost_total")?,
    })
}

/// What the load runs against.
pub(super) struct Target<'a> {
    pub memmon: &'a Path,
    pub socket: &'a Path,
    /// The daemon's /metrics.
    pub url: &'a str,
    /// The process queried.
    pub pid: u32,
    /// The daemon, whose loop thread's schedstat is read.
    pub daemon_pid: u32,
}

/// `clients` threads query the target (JSON) in a loop while `memloop`
/// runs mmap+munmap flat out, for `windows` windows.
pub(super) fn measure(
    reaper: &mut Reaper,
    target: &Target,
    memloop: &Path,
    clients: usize,
    windows: usize,
) -> Result<DrainGaps> {
    let Target {
        memmon,
        socket,
        url,
        pid,
        daemon_pid,
    } = *target;
    let loop_tid = sched::loop_tid(daemon_pid);
    // A scrape now makes the one after the first window a fresh one.
    read(url)?;
    let secs = (WINDOW * (windows as u32 + 2)).as_secs() + 1;
    let looping = reaper.add(
        Command::new(memloop)
            .args(["mmap-for", &secs.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .context("starting memloop")?,
    );
    let looping = looping.id();
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, queries) = (Arc::clone(&stop), Arc::clone(&queries));
            let (memmon, socket): (PathBuf, PathBuf) = (memmon.into(), socket.into());
            thread::spawn(move || -> Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    time_once(&mut Tool::QueryJson.command(&memmon, &socket, pid))?;
                    queries.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    // The first window starts once the load runs, from a fresh scrape
    // (which resets the gauge).
    thread::sleep(WINDOW);
    let first = read(url)?;
    let mut gaps = Vec::with_capacity(windows);
    let mut ring_waits = Vec::with_capacity(windows);
    let mut last = (first.events, first.lost);
    let (mut loop_sched, mut walls) = (Vec::new(), Vec::new());
    let mut sched_before = SchedStat::read(daemon_pid, loop_tid)?;
    let mut window_start = Instant::now();
    for _ in 0..windows {
        thread::sleep(WINDOW);
        let reading = read(url)?;
        let sched_now = SchedStat::read(daemon_pid, loop_tid)?;
        loop_sched.push(sched_now.since(&sched_before));
        walls.push(window_start.elapsed());
        (sched_before, window_start) = (sched_now, Instant::now());
        gaps.push(reading.gap);
        ring_waits.push(reading.ring_wait);
        last = (reading.events, reading.lost);
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("a query thread panicked")?;
    }
    reaper.stop(looping, "TERM");
    Ok(DrainGaps {
        windows: gaps,
        ring_waits,
        loop_sched,
        walls,
        queries: queries.load(Ordering::Relaxed),
        events: last.0 - first.events,
        lost: last.1 - first.lost,
    })
}
