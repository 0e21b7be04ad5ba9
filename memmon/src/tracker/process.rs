//! What the tracker knows about one process.

use std::{collections::VecDeque, sync::Arc};

use super::{SeedReason, convert::to_mem_op};
use crate::{
    events::Event,
    model::AddressSpace,
    origin::{self, CallSite, Cause, Interner, Origin, OriginMap},
    rules::wx_events::{self, WxLog},
    seed::Snapshot,
};

/// Where a process's model stands with respect to /proc.
#[derive(Debug, Default)]
pub enum SeedState {
    /// The model follows the process's events.
    #[default]
    Seeded,
    /// A snapshot is requested and not yet installed: events wait for it.
    Seeding {
        /// Events to replay on top of the snapshot.
        pending: Vec<Event>,
        /// The snapshot in flight may predate this (an exec, say): take
        /// another once it lands.
        reseed_after: Option<SeedReason>,
        /// The request in flight ([`super::SeedRequest::ticket`]).
        ticket: u64,
        /// Why it was made.
        reason: SeedReason,
    },
    /// The last snapshot request failed (e.g. permission): events apply,
    /// but the model is unverified.
    SeedFailed,
}

impl SeedState {
    pub fn is_seeding(&self) -> bool {
        matches!(self, SeedState::Seeding { .. })
    }

    /// Events waiting in this state's buffer.
    pub(super) fn buffered(&self) -> usize {
        match self {
            SeedState::Seeding { pending, .. } => pending.len(),
            SeedState::Seeded | SeedState::SeedFailed => 0,
        }
    }

    pub(super) fn seeding(ticket: u64, reason: SeedReason) -> Self {
        SeedState::Seeding {
            pending: Vec::new(),
            reseed_after: None,
            ticket,
            reason,
        }
    }
}

#[derive(Debug)]
pub struct ProcessState {
    pub pid: u32,
    /// /proc/PID/stat start time, once a snapshot told it: with the pid it
    /// identifies the process, so a reused pid never inherits a model.
    pub start_time_ticks: Option<u64>,
    pub comm: String,
    pub exe: Option<String>,
    pub uid: Option<u32>,
    pub personality: Option<u32>,
    pub cgroup: Option<String>,
    /// Shared with published views: the loop mutates through
    /// `Arc::make_mut`, so a view a worker still holds is copied once,
    /// not on every publish.
    pub space: Arc<AddressSpace>,
    /// Who made each range of `space`, shared with views as `space` is.
    pub origins: Arc<OriginMap>,
    /// Memory syscalls called and failed, for metrics.
    pub syscalls: super::SyscallCounts,
    /// W^X transitions: the recent ones with their origins, and counts.
    pub wx: WxLog,
    /// Recent events, rendered only when asked for (rendering every event
    /// on the hot path cost more than applying it).
    pub history: VecDeque<Event>,
    /// Model-changing events applied (verification uses it to detect races).
    pub applied_events: u64,
    /// When the installed snapshot was taken (CLOCK_MONOTONIC ns, as events
    /// are stamped): events stamped earlier are already in it. Replaying
    /// them would not be idempotent: an old mremap would move, or an old
    /// shmdt remove, whatever the snapshot shows at their addresses now.
    pub(super) snapshot_ns: u64,
    /// Changed only by the tracker, which counts the processes seeding.
    pub(super) seed: SeedState,
}

/// What the daemon's workers see of a process: a copy taken on the loop
/// (the address space shared, not copied), read without locks while the
/// loop goes on applying events.
#[derive(Clone, Debug)]
pub struct ProcessView {
    pub pid: u32,
    pub start_time_ticks: Option<u64>,
    pub comm: String,
    pub exe: Option<String>,
    pub uid: Option<u32>,
    pub personality: Option<u32>,
    pub cgroup: Option<String>,
    pub space: Arc<AddressSpace>,
    pub origins: Arc<OriginMap>,
    pub syscalls: super::SyscallCounts,
    pub wx: WxLog,
    /// The most recent events, as many as the request asked for.
    pub history: Vec<Event>,
    /// The model's version: it changes whenever the model does.
    pub applied_events: u64,
    pub awaiting_snapshot: bool,
}

impl ProcessState {
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            start_time_ticks: None,
            comm: String::new(),
            exe: None,
            uid: None,
            personality: None,
            cgroup: None,
            space: Arc::new(AddressSpace::new()),
            origins: Arc::default(),
            syscalls: Default::default(),
            wx: WxLog::default(),
            history: VecDeque::new(),
            applied_events: 0,
            snapshot_ns: 0,
            seed: SeedState::Seeded,
        }
    }

    pub fn seed_state(&self) -> &SeedState {
        &self.seed
    }

    /// Whether the model waits for a snapshot (and so is not current).
    pub fn awaiting_snapshot(&self) -> bool {
        self.seed.is_seeding()
    }

    /// An immutable copy for workers, with the last `history` events.
    pub fn view(&self, history: usize) -> ProcessView {
        ProcessView {
            pid: self.pid,
            start_time_ticks: self.start_time_ticks,
            comm: self.comm.clone(),
            exe: self.exe.clone(),
            uid: self.uid,
            personality: self.personality,
            cgroup: self.cgroup.clone(),
            space: Arc::clone(&self.space),
            origins: Arc::clone(&self.origins),
            syscalls: self.syscalls.clone(),
            wx: self.wx.clone(),
            history: self
                .history
                .iter()
                .skip(self.history.len().saturating_sub(history))
                .cloned()
                .collect(),
            applied_events: self.applied_events,
            awaiting_snapshot: self.awaiting_snapshot(),
        }
    }

    pub(super) fn record(&mut self, event: Event, cap: usize) {
        if cap == 0 {
            return;
        }
        while self.history.len() > cap {
            self.history.pop_front();
        }
        if self.history.len() == cap
            && let Some(oldest) = self.history.front_mut()
        {
            // Full: the oldest is overwritten in place and becomes the
            // newest, one copy of the event where a pop and a push made two.
            *oldest = event;
            self.history.rotate_left(1);
        } else {
            self.history.push_back(event);
        }
    }

    /// Applies a syscall event; true when a file behind a mapping could not
    /// be identified (the model then needs a snapshot to be exact).
    pub(super) fn apply_event(&mut self, event: &Event, interner: &mut Interner) -> bool {
        // The snapshot already shows the effect of an older event; only
        // who made the memory is news (the process's first calls after
        // exec land here, buffered while it was first read).
        let stale = event.meta.ts_ns < self.snapshot_ns;
        let (op, unresolved) = to_mem_op(event);
        if let Some(op) = op {
            let origins = Arc::make_mut(&mut self.origins);
            // The call site is normalized against the layout it was
            // called from, before the call changed it.
            let origin = origin::keeps_origin(&op)
                .then(|| origins.new_origin(Self::origin_fields(event, &self.space, interner)));
            let ts = event.meta.ts_ns;
            if stale {
                origin::apply(origins, &op, None, &self.space, ts, origin);
                return false;
            }
            let brk_before = self.space.brk;
            // Read before the model changes; nothing for most ops.
            let wx = wx_events::detect(&op, &self.space);
            Arc::make_mut(&mut self.space).apply(&op);
            // The origin map takes `origin`; the W^X log, rarely, a copy.
            let wx = wx.and_then(|wx| Some((wx, origin.clone()?)));
            origin::apply(origins, &op, brk_before, &self.space, ts, origin);
            // Only calls that make or change memory can set W or X.
            if let Some((wx, origin)) = wx {
                self.wx.record(wx, &origin);
            }
            self.applied_events += 1;
        }
        unresolved
    }

    /// `event` as an origin, its call site normalized against `space`.
    pub(super) fn origin_of(
        event: &Event,
        space: &AddressSpace,
        interner: &mut Interner,
    ) -> Arc<Origin> {
        Arc::new(Self::origin_fields(event, space, interner))
    }

    fn origin_fields(event: &Event, space: &AddressSpace, interner: &mut Interner) -> Origin {
        Origin {
            cause: event.syscall().map_or(Cause::Seed, Cause::Syscall),
            ts_ns: event.meta.ts_ns,
            tid: event.meta.tid,
            call_site: CallSite::normalize(space, event.meta.call_site, interner),
            stack_id: event.meta.stack_id,
        }
    }

    pub(super) fn install(&mut self, snapshot: Snapshot) {
        if self
            .start_time_ticks
            .is_some_and(|t| t != snapshot.start_time_ticks)
        {
            // The pid was reused: nothing of the old process carries over.
            self.history.clear();
            self.origins = Arc::default();
            self.wx.clear_events();
        }
        self.start_time_ticks = Some(snapshot.start_time_ticks);
        self.comm = snapshot.comm;
        self.exe = snapshot.exe;
        self.uid = Some(snapshot.uid);
        self.personality = Some(snapshot.personality);
        self.cgroup = snapshot.cgroup;
        // What the snapshot still shows keeps its origin; the rest was
        // made while memmon was not looking, and says so.
        self.origins = Arc::new(
            self.origins
                .rebase(&snapshot.space, &Origin::seed(snapshot.taken_ns)),
        );
        self.space = Arc::new(snapshot.space);
        self.snapshot_ns = snapshot.taken_ns;
        self.applied_events += 1;
    }
}
