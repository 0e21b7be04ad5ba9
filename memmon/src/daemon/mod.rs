//! The daemon: kernel events in, live models out, queries answered.
//!
//! One task, the loop, owns everything mutable (tracker, probes): events,
//! snapshot results, workers' commands and timers are multiplexed with
//! `select!`, so the models need no locks and see events in ring-buffer
//! order. The loop only applies events and hands out copies of models: it
//! does no file or /proc I/O and builds no layouts, so no user can stall
//! it. Queries, lists, verification and scrapes are answered by workers
//! (`workers.rs`) from those copies, on another thread (`services.rs`):
//! the loop's thread runs the loop alone.

mod access;
mod layout_cache;
mod map_count;
mod metrics;
mod origins;
mod priority;
mod publish;
mod services;
mod verify;
mod workers;
mod wx_events;

use std::{
    collections::HashSet,
    future::Future,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    sync::{mpsc, watch},
    time::{MissedTickBehavior, interval},
};

use crate::{
    bpf::{BpfError, EventStream, LoadOptions, Probes},
    seed,
    server::{self, ServerError},
    tracker::{
        ProcessView, SeedReason, Tracker,
        seeder::{SeedResult, Seeder},
    },
};
use publish::{Command, Counters, Published, Want};
use services::Services;
use workers::Workers;

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    /// Group allowed to connect to the socket (besides root).
    pub socket_group: Option<u32>,
    /// The /metrics endpoint; None serves no metrics.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub grouping: crate::config::Grouping,
    pub top_groups: usize,
    pub per_pid_top_k: usize,
    pub ringbuf_size: u64,
    pub history_len: usize,
    /// How often a sample of models is compared with /proc (0 disables).
    pub verify_interval: Duration,
    /// Processes compared per verification round.
    pub verify_batch: usize,
    pub max_snapshots_per_sec: u32,
    /// Threads reading files and memory that monitored processes control.
    pub io_threads: usize,
    /// How long one such read may take before its region is marked
    /// "unreadable (timed out)".
    pub read_deadline: Duration,
    /// Read ELF headers of files on FUSE and network filesystems too.
    pub read_elf_on_network_fs: bool,
    /// Read each memory syscall's call site in the kernel.
    pub call_sites: bool,
    /// Capture each memory syscall's user stack in the kernel.
    pub stacks: bool,
}

/// The file's settings as the daemon takes them, except `socket_group`:
/// its name needs /etc/group to become a gid, so it is left `None` here.
impl From<&crate::config::Config> for DaemonConfig {
    fn from(config: &crate::config::Config) -> Self {
        Self {
            socket: config.socket.clone(),
            socket_group: None,
            metrics_addr: Some(config.metrics_addr),
            grouping: config.grouping,
            top_groups: config.top_groups,
            per_pid_top_k: config.per_pid_top_k,
            ringbuf_size: config.ringbuf_size,
            history_len: config.history_len,
            verify_interval: Duration::from_secs(config.verify_interval_secs),
            verify_batch: config.verify_batch,
            max_snapshots_per_sec: crate::tracker::seeder::DEFAULT_MAX_SNAPSHOTS_PER_SEC,
            io_threads: crate::io_pool::DEFAULT_THREADS,
            read_deadline: crate::report::DEFAULT_READ_DEADLINE,
            read_elf_on_network_fs: config.read_elf_on_network_fs,
            call_sites: config.call_sites,
            stacks: config.stacks,
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self::from(&crate::config::Config::default())
    }
}

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot serve metrics on {0}: {1} (set metrics_addr / --metrics-addr)")]
    Metrics(std::net::SocketAddr, std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Periodic verification's work and findings, for metrics.
#[derive(Clone, Debug, Default)]
pub struct DriftStats {
    pub rounds: u64,
    pub processes_checked: u64,
    /// Differences found in the last round.
    pub last_round_regions: u64,
}

const BATCH: usize = 4096;

pub struct Daemon {
    config: DaemonConfig,
    probes: Probes,
    stream: EventStream,
    tracker: Tracker,
    seeder: Seeder,
    seed_results: mpsc::UnboundedReceiver<SeedResult>,
    commands: mpsc::Receiver<Command>,
    workers: Arc<Workers>,
    /// Bumped whenever a snapshot lands or fails: workers waiting for a
    /// process's model wait on it, not on the loop.
    installs: watch::Sender<u64>,
    /// How many processes are tracked, for pings.
    tracked: Arc<AtomicUsize>,
    metrics_bound: Option<std::net::SocketAddr>,
    verify_cursor: u32,
    /// When the loop last read the ring buffer (or woke with nothing to
    /// read), and the longest it was busy with something else since.
    last_read: Instant,
    /// Reset by each scrape.
    drain_gap_max: Duration,
    /// `Probes::lost_pids_full` when last acted on.
    lost_pids_full_seen: u64,
    /// Servers and workers, on their own thread; dropped last.
    services: Services,
}

impl Daemon {
    /// Loads the programs, binds the socket and the metrics endpoint and
    /// queues the initial scan. Must be called inside a tokio runtime.
    pub async fn start(config: DaemonConfig) -> Result<Self, DaemonError> {
        let mut probes = Probes::load(&LoadOptions {
            ringbuf_size: config.ringbuf_size,
            call_sites: config.call_sites,
            stacks: config.stacks,
        })?;
        let stream = probes.event_stream()?;
        let stacks = probes.stack_table()?;
        if let Some(log) = probes.kernel_log() {
            tokio::spawn(log.forward());
        }
        let services = Services::start()?;
        let listener = {
            // Registered with the servers' runtime, which polls it.
            let _serving = services.handle().enter();
            server::bind(&config.socket, config.socket_group)?
        };
        let (req_tx, requests) = mpsc::channel(64);
        services.handle().spawn(server::serve(listener, req_tx));
        let (scrape_tx, scrapes) = mpsc::channel(8);
        let mut metrics_bound = None;
        if let Some(addr) = config.metrics_addr {
            let listener = services
                .handle()
                .spawn(crate::metrics::http::bind(addr))
                .await
                .map_err(std::io::Error::other)?
                .map_err(|e| DaemonError::Metrics(addr, e))?;
            metrics_bound = listener.local_addr().ok();
            services
                .handle()
                .spawn(crate::metrics::http::serve(listener, scrape_tx));
        }
        let (results_tx, seed_results) = mpsc::unbounded_channel();
        let seeder = Seeder::spawn(results_tx, config.max_snapshots_per_sec)?;
        let mut tracker = Tracker::new(config.history_len);
        // Programs are attached before the scan, so nothing falls between.
        for pid in seed::list_pids().map_err(|e| std::io::Error::other(e.to_string()))? {
            tracker.request_seed(pid, SeedReason::Unknown);
        }
        let (command_tx, commands) = mpsc::channel(256);
        let (installs, installs_rx) = watch::channel(0);
        let tracked = Arc::new(AtomicUsize::new(0));
        let workers = Arc::new(Workers::new(
            &config,
            stacks,
            command_tx,
            installs_rx,
            Arc::clone(&tracked),
            services.handle().clone(),
        )?);
        services
            .handle()
            .spawn(Arc::clone(&workers).serve(requests, scrapes));
        let mut daemon = Self {
            config,
            probes,
            stream,
            tracker,
            seeder,
            seed_results,
            commands,
            workers,
            installs,
            tracked,
            metrics_bound,
            verify_cursor: 0,
            last_read: Instant::now(),
            drain_gap_max: Duration::ZERO,
            lost_pids_full_seen: 0,
            services,
        };
        daemon.pump_seed_requests();
        Ok(daemon)
    }

    /// Where /metrics is served (the real port when configured as 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_bound
    }

    /// Serves until `shutdown` resolves. `on_ready` runs once the initial
    /// scan has landed (every process has a model).
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        on_ready: impl FnOnce(&Tracker),
    ) -> Result<(), DaemonError> {
        tokio::pin!(shutdown);
        // Every other thread is started by now and keeps its priority.
        priority::raise_loop_thread();
        let mut on_ready = Some(on_ready);
        let mut housekeeping = interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let verify_every = if self.config.verify_interval.is_zero() {
            Duration::from_secs(86400 * 365)
        } else {
            self.config.verify_interval
        };
        let mut verify_tick = interval(verify_every);
        verify_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        verify_tick.tick().await; // the first tick is immediate; skip it
        let mut ticks: u64 = 0;
        loop {
            // Every arm is synchronous: nothing is awaited while the ring
            // buffer waits.
            tokio::select! {
                _ = &mut shutdown => break,
                read = self.stream.wait() => {
                    self.last_read = Instant::now();
                    read?;
                    self.drain();
                }
                Some(result) = self.seed_results.recv() => {
                    self.last_read = Instant::now();
                    self.install(result);
                    if self.tracker.seeding_count() == 0 && let Some(ready) = on_ready.take() {
                        ready(&self.tracker);
                    }
                }
                Some(command) = self.commands.recv() => {
                    self.last_read = Instant::now();
                    self.command(command);
                }
                _ = housekeeping.tick() => {
                    self.last_read = Instant::now();
                    ticks += 1;
                    self.housekeeping(ticks);
                }
                _ = verify_tick.tick() => {
                    self.last_read = Instant::now();
                    self.verify_round();
                }
            }
            self.pump_seed_requests();
            self.tracked.store(self.tracker.len(), Ordering::Relaxed);
            self.note_read();
        }
        let _ = std::fs::remove_file(&self.config.socket);
        Ok(())
    }

    /// Applies up to [`BATCH`] queued records as they are decoded;
    /// returns how many were read.
    fn drain(&mut self) -> usize {
        let Self {
            stream, tracker, ..
        } = self;
        stream.drain(BATCH, |event| tracker.apply(event))
    }

    /// Records a read of the ring buffer (or a return to waiting for
    /// one): the time since the previous one was spent elsewhere.
    fn note_read(&mut self) {
        let now = Instant::now();
        self.drain_gap_max = self.drain_gap_max.max(now - self.last_read);
        self.last_read = now;
    }

    /// Applies everything queued now, including finished snapshots.
    fn catch_up(&mut self) {
        loop {
            self.note_read();
            if self.drain() == 0 {
                break;
            }
        }
        while let Ok(result) = self.seed_results.try_recv() {
            self.install(result);
        }
        self.pump_seed_requests();
    }

    fn install(&mut self, SeedResult { request, result }: SeedResult) {
        match result {
            Ok(snapshot) => self.tracker.install_snapshot(&request, snapshot),
            Err(err) => {
                log::debug!("snapshot of pid {} failed: {err}", request.pid);
                self.tracker.snapshot_failed(&request, err.is_no_such_pid());
            }
        }
        self.installs.send_modify(|n| *n += 1);
    }

    fn pump_seed_requests(&mut self) {
        for request in self.tracker.take_requests() {
            self.seeder.request(request);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::View { want, reply } => {
                self.catch_up();
                let _ = reply.send(self.publish(want));
            }
            Command::Seed(pid, reason) => self.tracker.request_seed(pid, reason),
            Command::Alive { before, alive } => {
                // Processes that appeared after the listing are kept.
                let keep: HashSet<u32> = self
                    .tracker
                    .processes()
                    .map(|p| p.pid)
                    .filter(|p| alive.contains(p) || !before.contains(p))
                    .collect();
                self.tracker.retain_alive(&keep);
            }
        }
    }

    fn publish(&mut self, want: Want) -> Published {
        let (mut processes, origins): (Vec<ProcessView>, bool) = match want {
            Want::One {
                pid,
                history,
                origins,
            } => (
                self.tracker
                    .process(pid)
                    .map(|p| p.view(history))
                    .into_iter()
                    .collect(),
                origins,
            ),
            Want::All { origins } => (
                self.tracker.processes().map(|p| p.view(0)).collect(),
                origins,
            ),
            Want::Metrics => (self.tracker.processes().map(|p| p.view(0)).collect(), false),
        };
        if !origins {
            // Shared with a worker, each model and origin map is copied by
            // the loop at the process's next event (Arc::make_mut): a
            // 20,000-region process's two maps took most of the loop's time
            // while clients queried it. Origins are shared only when asked.
            for view in &mut processes {
                view.origins = Arc::default();
            }
        }
        let counters = matches!(want, Want::Metrics).then(|| {
            let stats = &self.tracker.stats;
            Box::new(Counters {
                events: stats.events,
                events_lost: self.probes.lost_events(),
                events_undecodable: self.stream.decode_errors,
                unseen_layout_changes: self.probes.unseen_layout_changes(),
                lost_pids_full: self.probes.lost_pids_full(),
                stack_capture_failures: self.probes.stack_capture_failures(),
                kernel_errors: self.probes.kernel_errors(),
                resyncs: stats.resyncs.clone(),
                snapshots_installed: stats.snapshots_installed,
                snapshots_failed: stats.snapshots_failed,
                snapshots_superseded: stats.snapshots_superseded,
                buffered_events_dropped: stats.buffered_events_dropped,
                tracked: self.tracker.len() as u64,
                drain_gap_max_seconds: std::mem::take(&mut self.drain_gap_max).as_secs_f64(),
                ring_wait_max_seconds: self.stream.take_ring_wait_max().as_secs_f64(),
                retired_syscalls: self.tracker.retired_syscalls().clone(),
                retired_wx: self.tracker.retired_wx().clone(),
            })
        });
        Published {
            processes,
            counters,
        }
    }

    fn housekeeping(&mut self, ticks: u64) {
        match self.probes.take_lost_pids() {
            Ok(pids) => {
                for pid in pids {
                    self.tracker.request_seed(pid, SeedReason::Lost);
                }
            }
            Err(err) => log::warn!("reading the lost-pid map: {err}"),
        }
        // The kernel could not name a process that lost something: any of
        // them may be wrong, so every model is read again.
        let full = self.probes.lost_pids_full();
        if full > self.lost_pids_full_seen {
            self.lost_pids_full_seen = full;
            log::warn!("the kernel's lost-process map overflowed: resyncing every process");
            let pids: Vec<u32> = self.tracker.processes().map(|p| p.pid).collect();
            for pid in pids {
                self.tracker.request_seed(pid, SeedReason::Lost);
            }
        }
        // Exit events can be lost too: a worker lists /proc, and models of
        // processes gone are dropped when its answer comes back.
        if ticks.is_multiple_of(10) {
            let before: HashSet<u32> = self.tracker.processes().map(|p| p.pid).collect();
            self.services
                .handle()
                .spawn(Arc::clone(&self.workers).list_alive(before));
        }
    }

    /// Starts comparing a rotating sample of models with /proc, on a
    /// worker; drifted ones come back as resync commands.
    fn verify_round(&mut self) {
        let mut pids: Vec<u32> = self
            .tracker
            .processes()
            .filter(|p| !p.awaiting_snapshot())
            .map(|p| p.pid)
            .collect();
        pids.sort_unstable();
        let start = pids.partition_point(|&p| p <= self.verify_cursor);
        let sample: Vec<u32> = pids[start..]
            .iter()
            .chain(pids[..start].iter())
            .take(self.config.verify_batch)
            .copied()
            .collect();
        if let Some(last) = sample.last() {
            self.verify_cursor = *last;
        }
        self.workers.start_verify_round(sample);
    }
}
