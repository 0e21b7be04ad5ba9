//! What workers ask of the loop, and what it hands them: copies of models
//! taken between two batches, which they read while the loop goes on.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use crate::{
    rules::wx_events::WxCounts,
    tracker::{ProcessView, SeedReason, SyscallCounts},
};

/// A worker's message to the loop. Each is answered without I/O.
pub(super) enum Command {
    /// Apply what is queued, then send a view.
    View {
        want: Want,
        reply: oneshot::Sender<Published>,
    },
    /// Take a (re)snapshot of a process.
    Seed(u32, SeedReason),
    /// Processes listed in /proc: models of those tracked before the
    /// listing began and missing from it are dropped (their exits were lost).
    Alive {
        before: HashSet<u32>,
        alive: HashSet<u32>,
    },
}

pub(super) enum Want {
    /// One process, with up to `history` recent events, and its origins
    /// when `origins`.
    One {
        pid: u32,
        history: usize,
        origins: bool,
    },
    /// Every process, without history or origins, and the counters for a
    /// scrape.
    Metrics,
    /// Every process, without history, with origins when `origins`.
    All { origins: bool },
}

/// The daemon's counters at the moment of a view, for a scrape.
#[derive(Default)]
pub(super) struct Counters {
    pub events: u64,
    pub events_lost: u64,
    pub events_undecodable: u64,
    pub unseen_layout_changes: u64,
    pub lost_pids_full: u64,
    /// `bpf::Probes::stack_capture_failures`.
    pub stack_capture_failures: Vec<(&'static str, u64)>,
    /// `bpf::Probes::kernel_errors`.
    pub kernel_errors: Vec<(&'static str, &'static str, u64)>,
    pub resyncs: HashMap<String, u64>,
    pub snapshots_installed: u64,
    pub snapshots_failed: u64,
    pub snapshots_superseded: u64,
    pub buffered_events_dropped: u64,
    pub tracked: u64,
    pub drain_gap_max_seconds: f64,
    pub ring_wait_max_seconds: f64,
    pub retired_syscalls: HashMap<(String, Option<String>), SyscallCounts>,
    pub retired_wx: HashMap<(String, Option<String>), WxCounts>,
}

/// A consistent copy of (part of) the loop's state.
pub(super) struct Published {
    pub processes: Vec<ProcessView>,
    pub counters: Option<Box<Counters>>,
}
