//! The daemon's process table: one model per live process, fed by events.
//!
//! Pure bookkeeping, with no I/O: /proc snapshots
//! are requested (returned as [`SeedRequest`]s) and handed back later with
//! [`Tracker::install_snapshot`], so that slow /proc reads never block event
//! consumption. While a process waits for its snapshot its events are
//! buffered and replayed on top of it, except those stamped before the
//! snapshot was taken (it already shows them). Those stamped while /proc
//! was read are replayed: a window of microseconds, where a request can
//! wait seconds in the seeder's queue.

mod convert;
mod counts;
pub(crate) mod pid_hash;
mod process;
pub mod seeder;
mod wx_catch_up;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;

pub use convert::to_mem_op;
pub use counts::{CallCount, SyscallCounts};
pub use process::{ProcessState, ProcessView, SeedState};

use crate::{
    events::{Event, EventBody, Syscall},
    rules::wx_events::WxCounts,
    seed::Snapshot,
};

/// Default number of recent events kept per process.
pub const DEFAULT_HISTORY_LEN: usize = 256;
/// Events buffered for a process awaiting its snapshot; past this the
/// buffer is dropped and a fresh snapshot requested once the current one lands.
pub const MAX_BUFFERED_EVENTS: usize = 8192;
/// Events buffered for all processes together: any number of processes
/// awaiting snapshots must not grow the daemon past its memory goal (an
/// event is ~150 bytes, so this is ~10 MiB). Past it, the process whose
/// event does not fit loses its buffer and is resynced.
pub const MAX_BUFFERED_EVENTS_TOTAL: usize = 65_536;

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
    /// A file mapping whose path the kernel programs could not read
    /// whole (see `convert::PATH_FROM_PROC`).
    Unresolved,
    /// Periodic verification found drift.
    Drift,
    /// The buffer of events awaiting a snapshot overflowed.
    Overflow,
    /// A syscall whose effect its event cannot describe
    /// (`Syscall::resync_reason`).
    Unmodelled,
    /// A failed syscall that may have changed part of what it was asked
    /// to (`Event::partial_effect`).
    PartialFailure,
}

impl SeedReason {
    pub const ALL: [SeedReason; 9] = [
        SeedReason::Unknown,
        SeedReason::Exec,
        SeedReason::Fork,
        SeedReason::Lost,
        SeedReason::Unresolved,
        SeedReason::Drift,
        SeedReason::Overflow,
        SeedReason::Unmodelled,
        SeedReason::PartialFailure,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            SeedReason::Unknown => "unknown",
            SeedReason::Exec => "exec",
            SeedReason::Fork => "fork",
            SeedReason::Lost => "lost",
            SeedReason::Unresolved => "unresolved",
            SeedReason::Drift => "drift",
            SeedReason::Overflow => "overflow",
            SeedReason::Unmodelled => "unmodelled",
            SeedReason::PartialFailure => "partial_failure",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedRequest {
    pub pid: u32,
    pub reason: SeedReason,
    /// Which request this is: only the answer to the one a process awaits
    /// is installed. An older answer (the process was forked anew under
    /// that pid, or seeded since) would overwrite events applied after
    /// its snapshot was taken.
    pub ticket: u64,
}

/// Counters the daemon exports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrackerStats {
    pub events: u64,
    pub snapshots_installed: u64,
    pub snapshots_failed: u64,
    pub resyncs: HashMap<String, u64>,
    /// Snapshots and failures that answered a request no longer awaited.
    pub snapshots_superseded: u64,
    /// Events dropped from buffers that overflowed (their processes resynced).
    pub buffered_events_dropped: u64,
}

/// Distinct (comm, cgroup) keys kept for exited processes' counters.
pub const MAX_RETIRED_KEYS: usize = 4096;

pub struct Tracker {
    processes: pid_hash::PidMap<ProcessState>,
    retired: HashMap<(String, Option<String>), SyscallCounts>,
    /// W^X transition counts of exited processes, keyed as `retired`.
    retired_wx: HashMap<(String, Option<String>), WxCounts>,
    /// Processes in [`SeedState::Seeding`], kept with every transition.
    seeding: usize,
    /// Events in all processes' buffers, kept with every change to them.
    buffered: usize,
    buffer_budget: usize,
    requests: VecDeque<SeedRequest>,
    /// The next [`SeedRequest::ticket`].
    next_ticket: u64,
    history_len: usize,
    /// Object paths of call sites, shared across processes.
    interner: crate::origin::Interner,
    pub stats: TrackerStats,
}

/// Adds an exited process's `counts` under `key`, or under the empty key
/// once [`MAX_RETIRED_KEYS`] are kept.
fn retire<T: Default>(
    retired: &mut HashMap<(String, Option<String>), T>,
    mut key: (String, Option<String>),
    counts: &T,
    add: fn(&mut T, &T),
) {
    if retired.len() >= MAX_RETIRED_KEYS && !retired.contains_key(&key) {
        key = (String::new(), None);
    }
    add(retired.entry(key).or_default(), counts);
}

impl Tracker {
    pub fn new(history_len: usize) -> Self {
        Self {
            processes: pid_hash::PidMap::default(),
            retired: HashMap::new(),
            retired_wx: HashMap::new(),
            seeding: 0,
            buffered: 0,
            buffer_budget: MAX_BUFFERED_EVENTS_TOTAL,
            requests: VecDeque::new(),
            next_ticket: 0,
            history_len,
            interner: Default::default(),
            stats: TrackerStats::default(),
        }
    }

    /// As [`Tracker::new`], with another bound on buffered events.
    pub fn with_buffer_budget(history_len: usize, buffer_budget: usize) -> Self {
        Self {
            buffer_budget,
            ..Self::new(history_len)
        }
    }

    /// Events buffered now for processes awaiting snapshots.
    pub fn buffered_events(&self) -> usize {
        self.buffered
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

    /// Drops a process, keeping its syscall and W^X counts (counters
    /// never go back).
    fn remove(&mut self, pid: u32) {
        let Some(state) = self.processes.remove(&pid) else {
            return;
        };
        self.seeding -= usize::from(state.seed.is_seeding());
        self.buffered -= state.seed.buffered();
        let key = (state.comm, state.cgroup);
        if state.syscalls.any() {
            retire(
                &mut self.retired,
                key.clone(),
                &state.syscalls,
                SyscallCounts::add,
            );
        }
        if state.wx.counts().any() {
            retire(&mut self.retired_wx, key, state.wx.counts(), WxCounts::add);
        }
    }

    /// Moves `state` to `to` (which buffers nothing yet), keeping the
    /// counts of seeding processes and buffered events; returns the state
    /// it left.
    fn transition(
        seeding: &mut usize,
        buffered: &mut usize,
        state: &mut ProcessState,
        to: SeedState,
    ) -> SeedState {
        *seeding += usize::from(to.is_seeding());
        let from = std::mem::replace(&mut state.seed, to);
        *seeding -= usize::from(from.is_seeding());
        *buffered -= from.buffered();
        from
    }

    /// Syscall counts of exited processes, by (comm, cgroup); the empty
    /// comm collects those beyond [`MAX_RETIRED_KEYS`].
    pub fn retired_syscalls(&self) -> &HashMap<(String, Option<String>), SyscallCounts> {
        &self.retired
    }

    /// W^X transition counts of exited processes, as [`Self::retired_syscalls`].
    pub fn retired_wx(&self) -> &HashMap<(String, Option<String>), WxCounts> {
        &self.retired_wx
    }

    /// Processes waiting for a snapshot.
    pub fn seeding_count(&self) -> usize {
        self.seeding
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
        if let SeedState::Seeding { reseed_after, .. } = &mut state.seed {
            // A snapshot already in flight may predate what made this
            // request (an exec, say): take another once it lands.
            *reseed_after = Some(reason);
            return;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        Self::transition(
            &mut self.seeding,
            &mut self.buffered,
            state,
            SeedState::seeding(ticket, reason),
        );
        *self
            .stats
            .resyncs
            .entry(reason.label().to_owned())
            .or_default() += 1;
        self.requests.push_back(SeedRequest {
            pid,
            reason,
            ticket,
        });
    }

    /// The request `pid` awaits an answer to, if any.
    pub fn in_flight(&self, pid: u32) -> Option<SeedRequest> {
        match self.processes.get(&pid)?.seed {
            SeedState::Seeding { ticket, reason, .. } => Some(SeedRequest {
                pid,
                reason,
                ticket,
            }),
            _ => None,
        }
    }

    /// Whether `request` is the one its process awaits; counts it if not.
    fn awaited(&mut self, request: &SeedRequest) -> bool {
        let awaited = self
            .in_flight(request.pid)
            .is_some_and(|r| r.ticket == request.ticket);
        self.stats.snapshots_superseded += u64::from(!awaited);
        awaited
    }

    /// Applies one event; unknown processes are seeded first.
    pub fn apply(&mut self, event: Event) {
        self.stats.events += 1;
        let pid = event.meta.pid;
        match &event.body {
            EventBody::Fork { child_pid, .. } if *child_pid != pid => {
                let child = *child_pid;
                self.fork(pid, child, &event);
                return;
            }
            EventBody::Exit { group_dead: true } => {
                self.remove(pid);
                return;
            }
            EventBody::Exec { .. } => {
                // The new image is mapped with no syscall: only /proc knows it.
                self.record(pid, &event);
                if let Some(state) = self.processes.get_mut(&pid) {
                    if let SeedState::Seeding { pending, .. } = &mut state.seed {
                        self.buffered -= pending.len();
                        pending.clear();
                    }
                    state.comm = event.meta.comm.to_string();
                    // The old image's memory is gone with it.
                    state.origins = Default::default();
                }
                self.request_seed(pid, SeedReason::Exec);
                return;
            }
            _ => {}
        }
        let syscall = event.syscall();
        if syscall.is_none() && !matches!(event.body, EventBody::VmaName { .. }) {
            // Thread fork/exit: history only.
            self.record(pid, &event);
            return;
        }
        let failed = event.failed();
        let resync = if failed {
            event.partial_effect().map(|_| SeedReason::PartialFailure)
        } else {
            syscall
                .and_then(Syscall::resync_reason)
                .map(|_| SeedReason::Unmodelled)
        };
        // The common case, with one lookup and the event moved (not
        // copied) into the history once applied.
        if resync.is_none()
            && let Some(state) = self.processes.get_mut(&pid)
            && !state.seed.is_seeding()
        {
            if let Some(syscall) = syscall {
                state.syscalls.record(syscall, failed);
            }
            let unresolved = state.apply_event(&event, &mut self.interner);
            state.record(event, self.history_len);
            if unresolved {
                self.request_seed(pid, SeedReason::Unresolved);
            }
            return;
        }
        if !self.processes.contains_key(&pid) {
            self.request_seed(pid, SeedReason::Unknown);
        }
        if let Some(syscall) = syscall
            && let Some(state) = self.processes.get_mut(&pid)
        {
            state.syscalls.record(syscall, failed);
        }
        self.record(pid, &event);
        if let Some(reason) = resync {
            self.request_seed(pid, reason);
        }
        let state = self.processes.get_mut(&pid).expect("inserted above");
        if let SeedState::Seeding {
            pending,
            reseed_after,
            ..
        } = &mut state.seed
        {
            if pending.len() >= MAX_BUFFERED_EVENTS || self.buffered >= self.buffer_budget {
                // This event is lost with the buffer: the snapshot that
                // follows the one in flight covers both.
                self.buffered -= pending.len();
                self.stats.buffered_events_dropped += pending.len() as u64 + 1;
                pending.clear();
                *reseed_after = Some(SeedReason::Overflow);
            } else {
                pending.push(event);
                self.buffered += 1;
            }
            return;
        }
        if state.apply_event(&event, &mut self.interner) {
            self.request_seed(pid, SeedReason::Unresolved);
        }
    }

    fn record(&mut self, pid: u32, event: &Event) {
        let history_len = self.history_len;
        if let Some(state) = self.processes.get_mut(&pid) {
            state.record(event.clone(), history_len);
        }
    }

    fn fork(&mut self, parent: u32, child: u32, event: &Event) {
        self.record(parent, event);
        // The parent's model is the child's only while it shows the
        // moment of the fork: not while it awaits a snapshot, nor when its
        // snapshot was taken after the fork (it then holds the parent's
        // later changes, which the child never had).
        let copy = self
            .processes
            .get(&parent)
            .filter(|p| !p.seed.is_seeding() && p.snapshot_ns <= event.meta.ts_ns)
            .map(|p| {
                (
                    std::sync::Arc::clone(&p.space),
                    std::sync::Arc::clone(&p.origins),
                )
            });
        let parent_state = self.processes.get(&parent);
        let mut state = ProcessState::new(child);
        state.comm = event.meta.comm.to_string();
        if let Some(p) = parent_state {
            state.exe = p.exe.clone();
            state.uid = p.uid;
            state.personality = p.personality;
            state.cgroup = p.cgroup.clone();
        }
        let needs_seed = copy.is_none();
        if let Some((space, origins)) = copy {
            // The child's memory was made by the parent's calls.
            state.space = space;
            state.origins = origins;
        }
        if let Some(stale) = self.processes.insert(child, state) {
            // The pid was reused: a snapshot of the old process no longer counts.
            self.seeding -= usize::from(stale.seed.is_seeding());
            self.buffered -= stale.seed.buffered();
        }
        if needs_seed {
            self.request_seed(child, SeedReason::Fork);
        }
    }

    /// Installs the answer to `request` and replays buffered events; an
    /// answer to a request no longer awaited is dropped.
    pub fn install_snapshot(&mut self, request: &SeedRequest, snapshot: Snapshot) {
        let pid = snapshot.pid;
        if pid != request.pid || !self.awaited(request) {
            return; // exited meanwhile, or superseded
        }
        let Some(state) = self.processes.get_mut(&pid) else {
            return;
        };
        self.stats.snapshots_installed += 1;
        let (pending, reseed_after) = match Self::transition(
            &mut self.seeding,
            &mut self.buffered,
            state,
            SeedState::Seeded,
        ) {
            SeedState::Seeding {
                pending,
                reseed_after,
                ..
            } => (pending, reseed_after),
            SeedState::Seeded | SeedState::SeedFailed => unreachable!("awaited above"),
        };
        state.install(snapshot);
        state.catch_up_wx(&pending, &mut self.interner);
        let mut unresolved = false;
        for event in &pending {
            unresolved |= state.apply_event(event, &mut self.interner);
        }
        if let Some(reason) = reseed_after {
            self.request_seed(pid, reason);
        } else if unresolved {
            self.request_seed(pid, SeedReason::Unresolved);
        }
    }

    /// A requested snapshot could not be taken: the process is gone, or
    /// /proc refused; drop what we know rather than keep a stale model.
    pub fn snapshot_failed(&mut self, request: &SeedRequest, gone: bool) {
        if !self.awaited(request) {
            return;
        }
        let pid = request.pid;
        self.stats.snapshots_failed += 1;
        if gone {
            self.remove(pid);
        } else if let Some(state) = self.processes.get_mut(&pid) {
            // Keep it visible, but unseeded models must not claim accuracy.
            Self::transition(
                &mut self.seeding,
                &mut self.buffered,
                state,
                SeedState::SeedFailed,
            );
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
    }
}

#[cfg(test)]
mod tests;
