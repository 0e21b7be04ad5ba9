//! The daemon's workers: requests and scrapes answered from copies of the
//! models the loop hands out, with the slow parts (files, /proc, layout
//! building, rendering) on blocking threads. A request waiting for a
//! process's first snapshot waits on a notification, with a deadline.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use super::{
    Command, DaemonConfig, DriftStats, Published, Want, access,
    layout_cache::{self, LayoutCache},
    metrics::CachedSummary,
};
use crate::{
    bpf::StackTable,
    config::Grouping,
    io_pool::IoPool,
    metrics::http::ScrapeRequest,
    protocol::{ErrorKind, Render, Reply, ReplyEnvelope, Request},
    report::{ElfReader, Layout, text::render_text},
    rules::{RANDOMIZE_VA_SPACE, RandomizeVaSpace},
    seed,
    server::{Incoming, Peer, frame, rendered_frame},
    tracker::{ProcessView, SeedReason},
};

/// How long a request waits for a process's model to be seeded.
pub(super) const WAIT_FOR_MODEL: Duration = Duration::from_secs(2);

pub(super) type Failure = (ErrorKind, String);

pub(super) struct Workers {
    commands: mpsc::Sender<Command>,
    installs: watch::Receiver<u64>,
    tracked: Arc<AtomicUsize>,
    /// The servers' and workers' runtime, not the loop's.
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) reader: ElfReader,
    pub(super) symbols: crate::symbols::Symbols,
    pub(super) history_len: usize,
    pub(super) summaries: Mutex<HashMap<u32, CachedSummary>>,
    pub(super) drift: Mutex<DriftStats>,
    pub(super) verifying: AtomicBool,
    layouts: LayoutCache,
    /// The kernel's captured user stacks, by the ids events carry.
    pub(super) stacks: StackTable,
    pub(super) grouping: Grouping,
    pub(super) top_groups: usize,
    pub(super) per_pid_top_k: usize,
    max_map_count: super::map_count::MaxMapCount,
}

/// How long `query --rss` waits for /proc/PID/smaps.
const SMAPS_DEADLINE: Duration = Duration::from_secs(10);

/// All of `file` from offset 0, by pread: a passed descriptor's offset is
/// left alone for [`Peer::still_allowed`]'s read.
fn read_from_start(file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mut text = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match file.read_at(&mut chunk, text.len() as u64)? {
            0 => return Ok(text),
            n => text.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A process that is gone, or not the asker's: one answer for both.
pub(super) fn no_such(pid: u32) -> Failure {
    let reply = crate::protocol::unseen(pid);
    (reply.kind, reply.message)
}

/// The kernel's ASLR setting now, or why it cannot be read.
pub(super) fn randomize_va_space() -> RandomizeVaSpace {
    RandomizeVaSpace::read(std::path::Path::new(RANDOMIZE_VA_SPACE))
}

/// A successful reply as a frame (called on blocking threads: a large
/// reply takes milliseconds to encode).
fn encode_ok(reply: Reply) -> Arc<Vec<u8>> {
    Arc::new(frame(&ReplyEnvelope::ok(reply)))
}

/// What `memmon query` prints for `layout`, as `render` asks.
fn render_layout(layout: &Layout, render: Render) -> Vec<u8> {
    match render {
        Render::Json => {
            let mut out = Vec::with_capacity(layout.regions.len() * 256);
            // A layout of plain strings and numbers always serializes.
            let _ = serde_json::to_writer_pretty(&mut out, layout);
            out.push(b'\n');
            out
        }
        Render::Text => render_text(layout, false).into_bytes(),
        Render::TextColor => render_text(layout, true).into_bytes(),
    }
}

/// Runs `f` on tokio's blocking threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| (ErrorKind::Internal, format!("a daemon worker failed: {e}")))
}

fn stopping() -> Failure {
    (ErrorKind::Internal, "the daemon is shutting down".into())
}

impl Workers {
    pub(super) fn new(
        config: &DaemonConfig,
        stacks: StackTable,
        commands: mpsc::Sender<Command>,
        installs: watch::Receiver<u64>,
        tracked: Arc<AtomicUsize>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Self> {
        let pool = IoPool::new(config.io_threads)?;
        Ok(Self {
            commands,
            installs,
            tracked,
            symbols: crate::symbols::Symbols::new(
                pool.clone(),
                config.read_deadline,
                config.read_elf_on_network_fs,
            ),
            history_len: config.history_len,
            runtime,
            reader: ElfReader::new(pool, config.read_deadline, config.read_elf_on_network_fs),
            summaries: Mutex::default(),
            drift: Mutex::default(),
            verifying: AtomicBool::new(false),
            layouts: LayoutCache::default(),
            stacks,
            grouping: config.grouping,
            top_groups: config.top_groups,
            per_pid_top_k: config.per_pid_top_k,
            max_map_count: super::map_count::MaxMapCount::new(),
        })
    }

    /// Answers requests and scrapes, each on its own task.
    pub(super) async fn serve(
        self: Arc<Self>,
        mut requests: mpsc::Receiver<Incoming>,
        mut scrapes: mpsc::Receiver<ScrapeRequest>,
    ) {
        loop {
            let workers = Arc::clone(&self);
            tokio::select! {
                Some(incoming) = requests.recv() => {
                    tokio::spawn(async move {
                        let reply = workers.handle(incoming.request, incoming.peer).await;
                        let _ = incoming.reply.send(reply);
                    });
                }
                Some(scrape) = scrapes.recv() => {
                    tokio::spawn(async move {
                        // Dropping the sender answers 503 (shutting down).
                        if let Ok(text) = workers.scrape().await {
                            let _ = scrape.send(text);
                        }
                    });
                }
                else => return,
            }
        }
    }

    /// vm.max_map_count (see `map_count`).
    pub(super) fn max_map_count(&self) -> Option<u64> {
        self.max_map_count.get()
    }

    pub(super) async fn send(&self, command: Command) -> Result<(), Failure> {
        self.commands.send(command).await.map_err(|_| stopping())
    }

    /// A copy of the loop's state, current as of now.
    pub(super) async fn view(&self, want: Want) -> Result<Published, Failure> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::View { want, reply }).await?;
        answer.await.map_err(|_| stopping())
    }

    async fn view_one(
        &self,
        pid: u32,
        history: usize,
        origins: bool,
    ) -> Result<Option<ProcessView>, Failure> {
        let published = self
            .view(Want::One {
                pid,
                history,
                origins,
            })
            .await?;
        Ok(published.processes.into_iter().next())
    }

    /// The model of `pid` (with its origins when `origins`) once seeded,
    /// waiting for its snapshot (asking for one if the process is new)
    /// until `deadline`.
    pub(super) async fn ready_view(
        &self,
        pid: u32,
        (history, origins): (usize, bool),
        deadline: Instant,
    ) -> Result<ProcessView, Failure> {
        let mut installs = self.installs.clone();
        loop {
            installs.borrow_and_update();
            match self.view_one(pid, history, origins).await? {
                Some(mut view) if !view.awaiting_snapshot => {
                    // Served only for the process now behind the pid: a
                    // model of an earlier one (pid reuse) is resynced
                    // first. A model built from a fork event has no start
                    // time of its own yet: it is the live process's (had
                    // the child exited, its exit or a loss would have
                    // dropped or resynced the model).
                    let live = blocking(move || access::start_time(pid)).await?;
                    match (live, view.start_time_ticks) {
                        (None, _) => return Err(no_such(pid)),
                        (Some(live), Some(model)) if live != model => {
                            self.send(Command::Seed(pid, SeedReason::Unknown)).await?;
                        }
                        (live, _) => {
                            view.start_time_ticks = live;
                            return Ok(view);
                        }
                    }
                }
                Some(_) => {}
                None if std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                    self.send(Command::Seed(pid, SeedReason::Unknown)).await?;
                }
                None => return Err(no_such(pid)),
            }
            match tokio::time::timeout_at(deadline, installs.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(stopping()),
                Err(_) => {
                    return Err((
                        ErrorKind::NotReady,
                        format!(
                            "pid {pid} has no model yet (its /proc snapshot is pending); try again"
                        ),
                    ));
                }
            }
        }
    }

    /// The reply to `request`, as a frame encoded on a blocking thread.
    async fn handle(self: Arc<Self>, request: Request, peer: Peer) -> Arc<Vec<u8>> {
        let reply = match request {
            Request::Query {
                pid,
                events,
                rss,
                origins,
                render,
            } => self.query(pid, events, (rss, origins, render), peer).await,
            Request::Origins { pid, window_ms } => self.origins(pid, window_ms, peer).await,
            Request::Leaks {
                window_ms,
                min_growth,
            } => self.leaks(window_ms, min_growth, peer).await,
            Request::Diff { pid, since_ms } => self.diff(pid, since_ms, peer).await,
            Request::Ping => Ok(Arc::new(frame(&ReplyEnvelope::ok(Reply::Pong {
                daemon_pid: std::process::id(),
                tracked_processes: self.tracked.load(Ordering::Relaxed),
                version: env!("CARGO_PKG_VERSION").into(),
            })))),
            Request::Verify { pid } => self.verify_as(pid, peer).await,
            Request::List => self.list(peer).await,
            Request::WxEvents { pid } => self.wx_events(pid, peer).await,
        };
        match reply {
            Ok(frame) => frame,
            Err((kind, message)) => Arc::new(frame(&ReplyEnvelope::error(kind, message))),
        }
    }

    /// A layout, reused while the model and process are unchanged (see
    /// `layout_cache`); the peer's access is checked either way.
    async fn query(
        self: Arc<Self>,
        pid: u32,
        events: usize,
        (rss, origins, render): (bool, bool, Option<Render>),
        peer: Peer,
    ) -> Result<Arc<Vec<u8>>, Failure> {
        let peer = blocking(move || peer.admit(pid).map(|()| peer)).await??;
        let deadline = Instant::now() + WAIT_FOR_MODEL;
        let view = self.ready_view(pid, (events, origins), deadline).await?;
        blocking(move || {
            let rva = randomize_va_space();
            if rss || origins {
                // Rss and ages are of this moment: never cached.
                let mut layout = crate::report::build_layout(&view, &self.reader, &rva, events);
                if rss {
                    let smaps = self.read_smaps(pid, &peer, view.start_time_ticks)?;
                    crate::report::attach_rss(&mut layout, &smaps);
                }
                if origins {
                    let namer = self.namer(pid);
                    crate::report::origins::attach_origins(&mut layout, &view, &namer);
                }
                peer.still_allowed(pid)?;
                return Ok(encode_ok(Reply::Layout(Box::new(layout))));
            }
            // Recent events are not part of the model's version.
            let key = (events == 0).then(|| layout_cache::Key::of(&view, &rva, render));
            let reply = match key.as_ref().and_then(|k| self.layouts.get(k)) {
                Some(hit) => {
                    if hit.refresh {
                        // Rebuilt ahead of its expiry, after this reply, so
                        // that a process queried again and again never
                        // makes a client wait for its rebuild.
                        let (workers, key) = (Arc::clone(&self), key.clone());
                        self.runtime.spawn_blocking(move || {
                            workers.build_reply(&view, &rva, (events, render), key);
                        });
                    }
                    hit.frame
                }
                None => self.build_reply(&view, &rva, (events, render), key),
            };
            // Checked after building: an exec or exit since the peer opened
            // its maps refuses the reply.
            peer.still_allowed(pid)?;
            Ok(reply)
        })
        .await?
    }

    /// A query's reply built from `view`, kept under `key` when given and
    /// nothing in it was unreadable.
    fn build_reply(
        &self,
        view: &ProcessView,
        rva: &RandomizeVaSpace,
        (events, render): (usize, Option<Render>),
        key: Option<layout_cache::Key>,
    ) -> Arc<Vec<u8>> {
        let layout = crate::report::build_layout(view, &self.reader, rva, events);
        let reusable = layout_cache::reusable(&layout);
        let reply = match render {
            Some(render) => Arc::new(rendered_frame(&render_layout(&layout, render))),
            None => encode_ok(Reply::Layout(Box::new(layout))),
        };
        if let Some(key) = key.filter(|_| reusable) {
            self.layouts.insert(key, Arc::clone(&reply));
        }
        reply
    }

    /// Names call sites of `pid`, with ages as of now.
    pub(super) fn namer(&self, pid: u32) -> crate::report::origins::Namer<'_> {
        crate::report::origins::Namer {
            pid,
            now_ns: seed::monotonic_ns(),
            symbols: &self.symbols,
            stacks: Some(&self.stacks),
        }
    }

    /// /proc/`pid`/smaps, read on the I/O pool within [`SMAPS_DEADLINE`]
    /// (the kernel may take long on a huge process, and the reader holds
    /// its mmap_lock), from the process whose model `start_time` is.
    fn read_smaps(
        &self,
        pid: u32,
        peer: &Peer,
        start_time: Option<u64>,
    ) -> Result<Vec<crate::report::SmapsEntry>, Failure> {
        let file = peer.smaps(pid)?;
        let text = self
            .reader
            .pool()
            .run(SMAPS_DEADLINE, move || read_from_start(&file))
            .map_err(|e| {
                (
                    ErrorKind::Internal,
                    format!("/proc/{pid}/smaps {e}; try again, or without --rss"),
                )
            })?
            .map_err(|_| no_such(pid))?;
        // The daemon's own open (root) names the pid, not the process: one
        // started since the model's would answer for it.
        if start_time.is_some() && access::start_time(pid) != start_time {
            return Err(no_such(pid));
        }
        crate::report::parse_smaps(&text).map_err(|e| (ErrorKind::Internal, e))
    }

    async fn verify_as(self: Arc<Self>, pid: u32, peer: Peer) -> Result<Arc<Vec<u8>>, Failure> {
        let peer = blocking(move || peer.admit(pid).map(|()| peer)).await??;
        let report = self.verify(pid).await?;
        blocking(move || {
            peer.still_allowed(pid)?;
            Ok(encode_ok(Reply::Verify(report)))
        })
        .await?
    }

    async fn list(self: Arc<Self>, peer: Peer) -> Result<Arc<Vec<u8>>, Failure> {
        let published = self.view(Want::All { origins: false }).await?;
        blocking(move || {
            let rva = randomize_va_space();
            let mut processes: Vec<_> = published
                .processes
                .iter()
                .filter(|p| !p.awaiting_snapshot && p.uid.is_some())
                .filter(|p| peer.sees_in_list(p.pid))
                .map(|p| self.summary(p, &rva).with_live_fields(p))
                .collect();
            processes.sort_by_key(|p| p.pid);
            encode_ok(Reply::Processes {
                processes,
                max_map_count: self.max_map_count(),
            })
        })
        .await
    }

    async fn scrape(self: Arc<Self>) -> Result<String, Failure> {
        let published = self.view(Want::Metrics).await?;
        blocking(move || crate::metrics::render_openmetrics(&self.collect_metrics(published))).await
    }

    /// Lists /proc and tells the loop which processes are gone.
    pub(super) async fn list_alive(self: Arc<Self>, before: std::collections::HashSet<u32>) {
        let Ok(Ok(pids)) = blocking(seed::list_pids).await else {
            return;
        };
        let alive = pids.into_iter().collect();
        let _ = self.send(Command::Alive { before, alive }).await;
    }
}
