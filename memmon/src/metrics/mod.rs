//! Prometheus metrics: what is exported, and how it is rendered.
//!
//! Cardinality is bounded by design: processes are aggregated per group
//! (systemd unit, comm or cgroup), only the top groups by mapped bytes are
//! named and the rest summed into `other`; there is no pid label (unless
//! per-pid series are opted into) and never an address.

mod catalog;
mod groups;
pub mod http;
mod render;

use std::collections::{BTreeMap, BTreeSet};

pub use catalog::{CATALOG, MetricDoc, metrics_markdown};
pub use groups::{OTHER_GROUP, group_name, unit_of};
pub use render::{render_openmetrics, to_prometheus_text};

use crate::{classify::RegionKind, tracker::CallCount};

/// Aggregates of one group of processes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupStats {
    pub processes: u64,
    pub mapped_bytes: BTreeMap<RegionKind, u64>,
    pub regions: BTreeMap<RegionKind, u64>,
    pub brk_heap_bytes: u64,
    pub wx_regions: u64,
    /// The most VMAs any one of the group's processes has.
    pub vmas_max: u64,
}

impl GroupStats {
    pub fn add(&mut self, other: &GroupStats) {
        self.processes += other.processes;
        for (k, v) in &other.mapped_bytes {
            *self.mapped_bytes.entry(*k).or_default() += v;
        }
        for (k, v) in &other.regions {
            *self.regions.entry(*k).or_default() += v;
        }
        self.brk_heap_bytes += other.brk_heap_bytes;
        self.wx_regions += other.wx_regions;
        self.vmas_max = self.vmas_max.max(other.vmas_max);
    }

    pub fn total_mapped(&self) -> u64 {
        self.mapped_bytes.values().sum()
    }
}

/// Everything one scrape exports, computed by the daemon.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// By group name, already capped (see [`cap_groups`]).
    pub groups: BTreeMap<String, GroupStats>,
    /// `(syscall, group) -> calls and failed calls`.
    pub syscalls: BTreeMap<(String, String), CallCount>,
    /// `(group, transition) -> W^X transitions`, exited processes included.
    pub wx_transitions: BTreeMap<(String, String), u64>,
    /// Processes per ASLR status (`full`, `partial`, `unknown`, `off`).
    pub aslr_processes: BTreeMap<String, u64>,
    /// `(group, reason code)` of processes whose ASLR is weakened.
    pub aslr_disabled: BTreeSet<(String, String)>,
    pub events_total: u64,
    pub events_lost_total: u64,
    pub events_undecodable_total: u64,
    pub unseen_layout_changes_total: u64,
    pub lost_pids_full_total: u64,
    /// User stacks the kernel could not store, by reason.
    pub stack_capture_failures_total: BTreeMap<String, u64>,
    /// `(kind, event)` -> times the kernel programs took that error path.
    pub kernel_errors_total: BTreeMap<(String, String), u64>,
    pub buffered_events_dropped_total: u64,
    /// Seconds; see `memmon_drain_gap_max_seconds`.
    pub drain_gap_max_seconds: f64,
    /// Seconds; see `memmon_ring_wait_max_seconds`.
    pub ring_wait_max_seconds: f64,
    pub resyncs_total: BTreeMap<String, u64>,
    pub snapshots_installed_total: u64,
    pub snapshots_failed_total: u64,
    pub snapshots_superseded_total: u64,
    pub model_drift_regions: u64,
    pub verify_rounds_total: u64,
    pub verify_processes_total: u64,
    pub tracked_processes: u64,
    pub cpu_seconds_total: f64,
    pub resident_memory_bytes: u64,
    /// What the bounds on /metrics and query-socket connections did.
    pub connections: crate::connections::ConnectionStats,
    /// vm.max_map_count, the most VMAs a process may have; None when it
    /// cannot be read (then no ratio is exported).
    pub max_map_count: Option<u64>,
    /// Opt-in: `(pid, comm, mapped bytes)` of the largest processes.
    pub per_pid: Vec<(u32, String, u64)>,
}

/// Keeps the `top` groups with the most mapped bytes by name and sums the
/// rest into [`OTHER_GROUP`]; returns the names kept.
pub fn cap_groups(
    groups: BTreeMap<String, GroupStats>,
    top: usize,
) -> (BTreeMap<String, GroupStats>, BTreeSet<String>) {
    let mut by_size: Vec<(String, GroupStats)> = groups.into_iter().collect();
    by_size.sort_by(|a, b| {
        b.1.total_mapped()
            .cmp(&a.1.total_mapped())
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut kept = BTreeMap::new();
    let mut other = GroupStats::default();
    for (i, (name, stats)) in by_size.into_iter().enumerate() {
        if i < top && name != OTHER_GROUP {
            kept.insert(name, stats);
        } else {
            other.add(&stats);
        }
    }
    let names: BTreeSet<String> = kept.keys().cloned().collect();
    if other.processes > 0 {
        kept.entry(OTHER_GROUP.to_owned()).or_default().add(&other);
    }
    (kept, names)
}
