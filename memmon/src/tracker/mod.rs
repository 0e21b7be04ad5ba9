//! The daemon's process table: one model per live process, fed by events.
//!
//! Pure bookkeeping apart from the injected [`Resolver`]: /proc snapshots
//! are requested (returned as [`SeedRequest`]s) and handed back later with
//! [`Tracker::install_snapshot`], so that slow /proc reads never block event
//! consumption. While a process waits for its snapshot its events are
//! buffered and replayed on top of it; every model operation is idempotent,
//! so events on either side of the snapshot's moment converge.

mod convert;
mod process;
pub mod resolve;
pub mod seeder;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;

pub use convert::to_mem_op;
pub use process::ProcessState;
pub use resolve::{ProcResolver, Resolver};

use crate::{
    events::{Event, EventBody, Syscall},
    seed::Snapshot,
};

/// Default number of recent events kept per process.
pub const DEFAULT_HISTORY_LEN: usize = 256;
/// Events buffered for a process awaiting its snapshot; past this the
/// buffer is dropped and a fresh snapshot requested once the current one lands.
pub const MAX_BUFFERED_EVENTS: usize = 8192;

/// Why a snapshot was requested (also a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedReason {
    /// Daemon start, or the first event of a process never seen.
    Unknown,
    /// exec replaced the image (the kernel maps it with no syscall).
    Exec,
    /// fork of a parent we had no model for.
    Fork,
    /// The kernel dropped records of this process.
    Lost,
    /// A file mapping whose file could not be identified.
    Unresolved,
    /// Periodic verification found drift.
    Drift,
    /// The buffer of events awaiting a snapshot overflowed.
    Overflow,
}

impl SeedReason {
    pub const fn label(self) -> &'static str {
        match self {
            SeedReason::Unknown => "unknown",
            SeedReason::Exec => "exec",
            SeedReason::Fork => "fork",
            SeedReason::Lost => "lost",
            SeedReason::Unresolved => "unresolved",
            SeedReason::Drift => "drift",
            SeedReason::Overflow => "overflow",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedRequest {
    pub pid: u32,
    pub reason: SeedReason,
}

/// Counters the daemon exports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrackerStats {
    pub events: u64,
    pub events_failed_syscalls: u64,
    pub snapshots_installed: u64,
    pub snapshots_failed: u64,
    pub resyncs: HashMap<String, u64>,
    pub exited: u64,
}

/// `[calls, failures]` per [`Syscall::ALL`] entry.
pub type SyscallCounts = [[u64; 2]; Syscall::ALL.len()];

/// Distinct (comm, cgroup) keys kept for exited processes' counters.
pub const MAX_RETIRED_KEYS: usize = 4096;

pub struct Tracker {
    processes: HashMap<u32, ProcessState>,
    retired: HashMap<(String, Option<String>), SyscallCounts>,
    /// Processes with file mappings not yet identified, and how many
    /// batches they have waited.
    unresolved: HashMap<u32, u8>,
    /// Pids whose snapshot has been requested and not yet installed.
    seeding: HashSet<u32>,
    requests: VecDeque<SeedRequest>,
    history_len: usize,
    pub stats: TrackerStats,
}

impl Tracker {
    pub fn new(history_len: usize) -> Self {
        Self {
            processes: HashMap::new(),
            retired: HashMap::new(),
            unresolved: HashMap::new(),
            seeding: HashSet::new(),
            requests: VecDeque::new(),
            history_len,
            stats: TrackerStats::default(),
        }
    }

    pub fn process(&self, pid: u32) -> Option<&ProcessState> {
        self.processes.get(&pid)
    }

    pub fn processes(&self) -> impl Iterator<Item = &ProcessState> {
        self.processes.values()
    }

    pub fn len(&self) -> usize {
        self.processes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Drops a process, keeping its syscall counts (counters never go
    /// back). Returns whether it was tracked.
    fn remove(&mut self, pid: u32) -> bool {
        let Some(state) = self.processes.remove(&pid) else {
            return false;
        };
        if state.syscalls.iter().any(|c| c[0] > 0) {
            let mut key = (state.comm, state.cgroup);
            if self.retired.len() >= MAX_RETIRED_KEYS && !self.retired.contains_key(&key) {
                key = (String::new(), None);
            }
            let counts = self.retired.entry(key).or_default();
            for (total, add) in counts.iter_mut().zip(state.syscalls) {
                total[0] += add[0];
                total[1] += add[1];
            }
        }
        true
    }

    /// Syscall counts of exited processes, by (comm, cgroup); the empty
    /// comm collects those beyond [`MAX_RETIRED_KEYS`].
    pub fn retired_syscalls(&self) -> &HashMap<(String, Option<String>), SyscallCounts> {
        &self.retired
    }

    /// Processes waiting for a snapshot.
    pub fn seeding_count(&self) -> usize {
        self.seeding.len()
    }

    /// Whether `pid` is waiting for a snapshot.
    pub fn is_seeding(&self, pid: u32) -> bool {
        self.seeding.contains(&pid)
    }

    /// Snapshot requests made since the last call.
    pub fn take_requests(&mut self) -> Vec<SeedRequest> {
        self.requests.drain(..).collect()
    }

    /// Asks for a (re)seed of `pid`; events keep being buffered until it lands.
    pub fn request_seed(&mut self, pid: u32, reason: SeedReason) {
        let state = self
            .processes
            .entry(pid)
            .or_insert_with(|| ProcessState::new(pid));
        state.buffering = true;
        if self.seeding.insert(pid) {
            *self
                .stats
                .resyncs
                .entry(reason.label().to_owned())
                .or_default() += 1;
            self.requests.push_back(SeedRequest { pid, reason });
        } else {
            // A snapshot already in flight may predate what made this
            // request (an exec, say): take another once it lands.
            state.reseed_after_install = Some(reason);
        }
    }

    /// Applies one event; unknown processes are seeded first.
    pub fn apply(&mut self, event: Event, resolver: &dyn Resolver) {
        self.stats.events += 1;
        let pid = event.meta.pid;
        match &event.body {
            EventBody::Fork { child_pid, .. } if *child_pid != pid => {
                let child = *child_pid;
                self.fork(pid, child, &event);
                return;
            }
            EventBody::Exit { group_dead: true } => {
                if self.remove(pid) {
                    self.stats.exited += 1;
                }
                self.seeding.remove(&pid);
                return;
            }
            EventBody::Exec { .. } => {
                // The new image is mapped with no syscall: only /proc knows it.
                self.record(pid, &event);
                if let Some(state) = self.processes.get_mut(&pid) {
                    state.pending.clear();
                    state.comm = event.meta.comm.clone();
                }
                self.request_seed(pid, SeedReason::Exec);
                return;
            }
            _ => {}
        }
        if event.syscall().is_none() && !matches!(event.body, EventBody::VmaName { .. }) {
            // Thread fork/exit: history only.
            self.record(pid, &event);
            return;
        }
        if event.failed() {
            self.stats.events_failed_syscalls += 1;
        }
        if !self.processes.contains_key(&pid) {
            self.request_seed(pid, SeedReason::Unknown);
        }
        if let Some(index) = event
            .syscall()
            .and_then(|s| Syscall::ALL.iter().position(|x| *x == s))
            && let Some(state) = self.processes.get_mut(&pid)
        {
            state.syscalls[index][0] += 1;
            state.syscalls[index][1] += u64::from(event.failed());
        }
        self.record(pid, &event);
        let state = self.processes.get_mut(&pid).expect("inserted above");
        if state.buffering {
            if state.pending.len() >= MAX_BUFFERED_EVENTS {
                state.pending.clear();
                state.reseed_after_install = Some(SeedReason::Overflow);
            } else {
                state.pending.push(event);
            }
            return;
        }
        if state.apply_event(&event, resolver) {
            self.unresolved.entry(pid).or_insert(0);
        }
    }

    /// Call after each batch: identifies the files of mappings whose exact
    /// range had already changed when their event was applied (the loader
    /// maps a library whole, then overlays its segments). Processes still
    /// unresolved after a second batch are resynced from /proc.
    pub fn finish_batch(&mut self, resolver: &dyn Resolver) {
        if self.unresolved.is_empty() {
            return;
        }
        let mut resync = Vec::new();
        self.unresolved.retain(|pid, waited| {
            let Some(state) = self.processes.get_mut(pid) else {
                return false;
            };
            if state.buffering || state.resolve_files(resolver) {
                return false;
            }
            *waited += 1;
            if *waited >= 2 {
                resync.push(*pid);
                return false;
            }
            true
        });
        for pid in resync {
            self.request_seed(pid, SeedReason::Unresolved);
        }
    }

    fn record(&mut self, pid: u32, event: &Event) {
        let history_len = self.history_len;
        if let Some(state) = self.processes.get_mut(&pid) {
            state.record(event, history_len);
        }
    }

    fn fork(&mut self, parent: u32, child: u32, event: &Event) {
        self.record(parent, event);
        let copy = self
            .processes
            .get(&parent)
            .filter(|p| !p.buffering)
            .map(|p| p.space.clone());
        let parent_state = self.processes.get(&parent);
        let mut state = ProcessState::new(child);
        state.comm = event.meta.comm.clone();
        if let Some(p) = parent_state {
            state.exe = p.exe.clone();
            state.uid = p.uid;
            state.personality = p.personality;
            state.cgroup = p.cgroup.clone();
        }
        self.seeding.remove(&child);
        match copy {
            Some(space) => {
                state.space = space;
                self.processes.insert(child, state);
            }
            None => {
                self.processes.insert(child, state);
                self.request_seed(child, SeedReason::Fork);
            }
        }
    }

    /// Installs a snapshot requested earlier and replays buffered events.
    pub fn install_snapshot(&mut self, snapshot: Snapshot, resolver: &dyn Resolver) {
        let pid = snapshot.pid as u32;
        self.seeding.remove(&pid);
        let Some(state) = self.processes.get_mut(&pid) else {
            return; // exited meanwhile
        };
        self.stats.snapshots_installed += 1;
        state.install(snapshot);
        let pending = std::mem::take(&mut state.pending);
        let mut unresolved = false;
        for event in &pending {
            unresolved |= state.apply_event(event, resolver);
        }
        let unresolved = unresolved && !state.resolve_files(resolver);
        if let Some(reason) = state.reseed_after_install.take() {
            self.request_seed(pid, reason);
        } else if unresolved {
            self.request_seed(pid, SeedReason::Unresolved);
        }
    }

    /// A requested snapshot could not be taken: the process is gone, or
    /// /proc refused; drop what we know rather than keep a stale model.
    pub fn snapshot_failed(&mut self, pid: u32, gone: bool) {
        self.seeding.remove(&pid);
        self.stats.snapshots_failed += 1;
        if gone {
            self.remove(pid);
        } else if let Some(state) = self.processes.get_mut(&pid) {
            // Keep it visible, but unseeded models must not claim accuracy.
            state.buffering = false;
            state.pending.clear();
            state.seed_error = true;
        }
    }

    /// Forgets processes that no longer exist (e.g. their exit event was lost).
    pub fn retain_alive(&mut self, alive: &HashSet<u32>) {
        let gone: Vec<u32> = self
            .processes
            .keys()
            .filter(|p| !alive.contains(p))
            .copied()
            .collect();
        for pid in gone {
            self.remove(pid);
        }
        self.seeding.retain(|pid| alive.contains(pid));
    }
}
