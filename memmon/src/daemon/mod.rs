//! The daemon: kernel events in, live models out, queries answered.
//!
//! One task owns everything mutable (tracker, probes): events, snapshot
//! results, socket requests and timers are multiplexed with `select!`, so
//! the models need no locks and see events in ring-buffer order.

mod metrics;
mod verify;

use std::{collections::HashSet, future::Future, path::PathBuf, time::Duration};

use thiserror::Error;
use tokio::{
    sync::mpsc,
    time::{MissedTickBehavior, interval},
};

use crate::{
    bpf::{BpfError, EventStream, LoadOptions, Probes},
    protocol::{ErrorKind, Reply, ReplyEnvelope, Request},
    seed,
    server::{self, Incoming, ServerError},
    tracker::{
        ProcResolver, SeedReason, Tracker,
        seeder::{SeedResult, Seeder},
    },
};

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
    requests: mpsc::Receiver<Incoming>,
    scrapes: mpsc::Receiver<crate::metrics::http::ScrapeRequest>,
    metrics_bound: Option<std::net::SocketAddr>,
    summaries: std::collections::HashMap<u32, metrics::CachedSummary>,
    resolver: ProcResolver,
    drift: DriftStats,
    verify_cursor: u32,
    elf_cache: crate::report::ElfCache,
    batch: Vec<crate::events::Event>,
}

impl Daemon {
    /// Loads the programs, binds the socket and the metrics endpoint and
    /// queues the initial scan. Must be called inside a tokio runtime.
    pub async fn start(config: DaemonConfig) -> Result<Self, DaemonError> {
        let mut probes = Probes::load(&LoadOptions {
            ringbuf_size: config.ringbuf_size,
        })?;
        let stream = probes.event_stream()?;
        let listener = server::bind(&config.socket, config.socket_group)?;
        let (req_tx, requests) = mpsc::channel(64);
        tokio::spawn(server::serve(listener, req_tx));
        let (scrape_tx, scrapes) = mpsc::channel(8);
        let mut metrics_bound = None;
        if let Some(addr) = config.metrics_addr {
            let listener = crate::metrics::http::bind(addr)
                .await
                .map_err(|e| DaemonError::Metrics(addr, e))?;
            metrics_bound = listener.local_addr().ok();
            tokio::spawn(crate::metrics::http::serve(listener, scrape_tx));
        }
        let (results_tx, seed_results) = mpsc::unbounded_channel();
        let seeder = Seeder::spawn(results_tx, config.max_snapshots_per_sec)?;
        let mut tracker = Tracker::new(config.history_len);
        // Programs are attached before the scan, so nothing falls between.
        for pid in seed::list_pids().map_err(|e| std::io::Error::other(e.to_string()))? {
            tracker.request_seed(pid, SeedReason::Unknown);
        }
        let mut daemon = Self {
            config,
            probes,
            stream,
            tracker,
            seeder,
            seed_results,
            requests,
            scrapes,
            metrics_bound,
            summaries: Default::default(),
            resolver: ProcResolver,
            drift: DriftStats::default(),
            verify_cursor: 0,
            elf_cache: crate::report::ElfCache::default(),
            batch: Vec::with_capacity(BATCH),
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
            tokio::select! {
                _ = &mut shutdown => break,
                read = self.stream.next_batch(&mut self.batch, BATCH) => {
                    read?;
                    self.apply_batch();
                }
                Some(result) = self.seed_results.recv() => {
                    self.install(result);
                    if self.tracker.seeding_count() == 0 && let Some(ready) = on_ready.take() {
                        ready(&self.tracker);
                    }
                }
                Some(scrape) = self.scrapes.recv() => {
                    let snapshot = self.collect_metrics();
                    let _ = scrape.send(crate::metrics::render_openmetrics(&snapshot));
                }
                Some(incoming) = self.requests.recv() => {
                    let reply = self.handle(incoming.request, incoming.uid).await;
                    let _ = incoming.reply.send(reply);
                }
                _ = housekeeping.tick() => {
                    ticks += 1;
                    self.housekeeping(ticks);
                }
                _ = verify_tick.tick() => self.verify_round(),
            }
            self.pump_seed_requests();
        }
        let _ = std::fs::remove_file(&self.config.socket);
        Ok(())
    }

    fn apply_batch(&mut self) {
        for event in self.batch.drain(..) {
            self.tracker.apply(event, &self.resolver);
        }
        self.tracker.finish_batch(&self.resolver);
    }

    /// Applies everything queued now, including finished snapshots.
    fn catch_up(&mut self) {
        while self.stream.drain_ready(&mut self.batch, BATCH) > 0 {
            self.apply_batch();
        }
        while let Ok(result) = self.seed_results.try_recv() {
            self.install(result);
        }
        self.pump_seed_requests();
    }

    fn install(&mut self, SeedResult { request, result }: SeedResult) {
        match result {
            Ok(snapshot) => self.tracker.install_snapshot(snapshot, &self.resolver),
            Err(err) => {
                log::debug!("snapshot of pid {} failed: {err}", request.pid);
                self.tracker
                    .snapshot_failed(request.pid, err.is_no_such_pid());
            }
        }
    }

    fn pump_seed_requests(&mut self) {
        for request in self.tracker.take_requests() {
            self.seeder.request(request);
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
        // Exit events can be lost too: drop models of processes now gone.
        if ticks.is_multiple_of(10)
            && let Ok(pids) = seed::list_pids()
        {
            let alive: HashSet<u32> = pids.into_iter().collect();
            self.tracker.retain_alive(&alive);
        }
    }

    async fn handle(&mut self, request: Request, uid: u32) -> ReplyEnvelope {
        match request {
            Request::Ping => ReplyEnvelope::ok(Reply::Pong {
                daemon_pid: std::process::id(),
                tracked_processes: self.tracker.len(),
                version: env!("CARGO_PKG_VERSION").into(),
            }),
            Request::Verify { pid } => {
                if let Err(denied) = self.authorize(uid, pid) {
                    return denied;
                }
                match self.verify(pid).await {
                    Ok(report) => ReplyEnvelope::ok(Reply::Verify(report)),
                    Err((kind, message)) => ReplyEnvelope::error(kind, message),
                }
            }
            Request::List => {
                self.catch_up();
                let rva = Self::randomize_va_space();
                let visible: Vec<u32> = self
                    .tracker
                    .processes()
                    .filter(|p| p.uid.is_some() && (uid == 0 || owned_by(p.pid, uid) == Some(true)))
                    .map(|p| p.pid)
                    .collect();
                let mut processes: Vec<_> = visible
                    .into_iter()
                    .filter_map(|pid| self.summary(pid, &rva))
                    .collect();
                processes.sort_by_key(|p| p.pid);
                ReplyEnvelope::ok(Reply::Processes { processes })
            }
            Request::Query { pid, events } => {
                if let Err(denied) = self.authorize(uid, pid) {
                    return denied;
                }
                match self.layout(pid, events).await {
                    Ok(layout) => ReplyEnvelope::ok(Reply::Layout(Box::new(layout))),
                    Err((kind, message)) => ReplyEnvelope::error(kind, message),
                }
            }
        }
    }

    /// Root sees everything; other users only processes that are wholly
    /// theirs: real, effective, saved and filesystem uid all equal to the
    /// peer's, read from /proc now (a setuid-root program started by the
    /// user, or a process that changed uid since its snapshot, is not).
    fn authorize(&self, peer_uid: u32, pid: u32) -> Result<(), ReplyEnvelope> {
        if peer_uid == 0 {
            return Ok(());
        }
        match owned_by(pid, peer_uid) {
            None => Err(ReplyEnvelope::error(
                ErrorKind::NoSuchPid,
                format!("no such process: pid {pid}"),
            )),
            Some(true) => Ok(()),
            Some(false) => Err(ReplyEnvelope::error(
                ErrorKind::PermissionDenied,
                format!("pid {pid} belongs to another user; only root may inspect it"),
            )),
        }
    }
}

impl Daemon {
    /// The layout of `pid`, once its model is seeded and current.
    async fn layout(
        &mut self,
        pid: u32,
        events: usize,
    ) -> Result<crate::report::Layout, (ErrorKind, String)> {
        for _ in 0..100 {
            self.catch_up();
            match self.tracker.process(pid) {
                Some(state) if !state.awaiting_snapshot() => {
                    let rva = Self::randomize_va_space();
                    return Ok(crate::report::build_layout(
                        state,
                        &mut self.elf_cache,
                        &rva,
                        events,
                    ));
                }
                Some(_) => {}
                None if std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                    self.tracker.request_seed(pid, SeedReason::Unknown);
                    self.pump_seed_requests();
                }
                None => return Err((ErrorKind::NoSuchPid, format!("no such process: pid {pid}"))),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err((
            ErrorKind::NotReady,
            format!("pid {pid} has no model yet (its /proc snapshot is pending); try again"),
        ))
    }
}

/// Whether every uid of `pid` (real, effective, saved, fs) is `uid`;
/// None when the process is gone.
fn owned_by(pid: u32, uid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = uids.split_whitespace().map(|u| u.parse::<u32>().ok());
    Some(ids.all(|id| id == Some(uid)))
}
