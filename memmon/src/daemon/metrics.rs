//! Gathering one scrape's numbers from a published copy of the daemon's
//! state, on a worker.

use std::collections::{BTreeMap, HashMap};

use super::{
    Published,
    workers::{Workers, randomize_va_space},
};
use crate::{
    classify::RegionKind,
    io_pool::lock,
    metrics::{GroupStats, MetricsSnapshot, OTHER_GROUP, cap_groups, group_name},
    report::{ProcessSummary, summarize},
    rules::{RandomizeVaSpace, wx_events::WxCounts},
    tracker::{CallCount, ProcessView, SyscallCounts},
};

/// A summary and the model version it was computed from.
pub(super) struct CachedSummary {
    start_time_ticks: Option<u64>,
    applied_events: u64,
    randomize_va_space: RandomizeVaSpace,
    summary: ProcessSummary,
}

impl Workers {
    /// The summary of a process, recomputed only when its model changed.
    /// The cache is not locked while one is computed: files may be slow.
    pub(super) fn summary(
        &self,
        state: &ProcessView,
        randomize_va_space: &RandomizeVaSpace,
    ) -> ProcessSummary {
        if let Some(c) = lock(&self.summaries).get(&state.pid)
            && c.applied_events == state.applied_events
            && c.start_time_ticks == state.start_time_ticks
            && c.randomize_va_space == *randomize_va_space
        {
            return c.summary.clone();
        }
        let summary = summarize(state, &self.reader, randomize_va_space);
        // One with unread files is not kept: they may answer next time.
        if summary.notes.is_empty() {
            let cached = CachedSummary {
                start_time_ticks: state.start_time_ticks,
                applied_events: state.applied_events,
                randomize_va_space: randomize_va_space.clone(),
                summary: summary.clone(),
            };
            lock(&self.summaries).insert(state.pid, cached);
        }
        summary
    }

    pub(super) fn collect_metrics(&self, published: Published) -> MetricsSnapshot {
        let counters = published.counters.unwrap_or_default();
        let rva = randomize_va_space();
        {
            let pids: std::collections::HashSet<u32> =
                published.processes.iter().map(|p| p.pid).collect();
            lock(&self.summaries).retain(|pid, _| pids.contains(pid));
        }
        let grouping = self.grouping;
        let mut groups: BTreeMap<String, GroupStats> = BTreeMap::new();
        let mut aslr_processes: BTreeMap<String, u64> = BTreeMap::new();
        let mut aslr_weak: Vec<(String, Vec<String>)> = Vec::new();
        let mut per_pid: Vec<(u32, String, u64)> = Vec::new();
        let mut syscalls_by_group: HashMap<String, SyscallCounts> = HashMap::new();
        let mut wx_by_group: HashMap<String, WxCounts> = HashMap::new();
        for state in published.processes.iter().filter(|p| !p.awaiting_snapshot) {
            let summary = self.summary(state, &rva);
            let pid = state.pid;
            let group = group_name(grouping, &state.comm, state.cgroup.as_deref());
            syscalls_by_group
                .entry(group.clone())
                .or_default()
                .add(&state.syscalls);
            if state.wx.counts().any() {
                wx_by_group
                    .entry(group.clone())
                    .or_default()
                    .add(state.wx.counts());
            }
            let stats = groups.entry(group.clone()).or_default();
            stats.processes += 1;
            for (kind, bytes) in &summary.by_kind {
                *stats.mapped_bytes.entry(*kind).or_default() += bytes;
            }
            for (kind, n) in &summary.regions_by_kind {
                *stats.regions.entry(*kind).or_default() += n;
            }
            stats.brk_heap_bytes += summary.by_kind.get(&RegionKind::Heap).copied().unwrap_or(0);
            stats.wx_regions += summary.wx_count as u64;
            stats.vmas_max = stats.vmas_max.max(summary.vmas as u64);
            *aslr_processes
                .entry(summary.aslr.status.label().to_owned())
                .or_default() += 1;
            if !summary.aslr.codes.is_empty() {
                aslr_weak.push((group, summary.aslr.codes.clone()));
            }
            per_pid.push((pid, summary.comm.clone(), summary.mapped_bytes));
        }
        // Exited processes' counts; the empty comm collects those beyond
        // the tracker's bound on keys.
        let retired_group = |comm: &str, cgroup: &Option<String>| {
            if comm.is_empty() {
                OTHER_GROUP.to_owned()
            } else {
                group_name(grouping, comm, cgroup.as_deref())
            }
        };
        for ((comm, cgroup), counts) in &counters.retired_syscalls {
            let group = retired_group(comm, cgroup);
            syscalls_by_group.entry(group).or_default().add(counts);
        }
        for ((comm, cgroup), counts) in &counters.retired_wx {
            let group = retired_group(comm, cgroup);
            wx_by_group.entry(group).or_default().add(counts);
        }
        let (groups, kept) = cap_groups(groups, self.top_groups);
        let capped = |g: String| {
            if kept.contains(&g) {
                g
            } else {
                OTHER_GROUP.to_owned()
            }
        };
        let mut syscalls = BTreeMap::new();
        for (group, counts) in syscalls_by_group {
            let group = capped(group);
            for (syscall, count) in counts.called() {
                let entry: &mut CallCount = syscalls
                    .entry((syscall.name().to_owned(), group.clone()))
                    .or_default();
                entry.add(count);
            }
        }
        let mut wx_transitions = BTreeMap::new();
        for (group, counts) in wx_by_group {
            let group = capped(group);
            for (kind, n) in counts.counted() {
                *wx_transitions
                    .entry((group.clone(), kind.label().to_owned()))
                    .or_default() += n;
            }
        }
        let aslr_disabled = aslr_weak
            .into_iter()
            .flat_map(|(g, codes)| {
                let g = capped(g);
                codes.into_iter().map(move |c| (g.clone(), c))
            })
            .collect();
        per_pid.sort_by_key(|p| std::cmp::Reverse(p.2));
        per_pid.truncate(self.per_pid_top_k);
        let (cpu_seconds_total, resident_memory_bytes) = own_usage();
        let drift = lock(&self.drift).clone();
        MetricsSnapshot {
            groups,
            syscalls,
            wx_transitions,
            aslr_processes,
            aslr_disabled,
            events_total: counters.events,
            events_lost_total: counters.events_lost,
            events_undecodable_total: counters.events_undecodable,
            unseen_layout_changes_total: counters.unseen_layout_changes,
            lost_pids_full_total: counters.lost_pids_full,
            stack_capture_failures_total: counters
                .stack_capture_failures
                .iter()
                .map(|&(reason, n)| (reason.to_owned(), n))
                .collect(),
            kernel_errors_total: counters
                .kernel_errors
                .iter()
                .map(|&(kind, event, n)| ((kind.to_owned(), event.to_owned()), n))
                .collect(),
            buffered_events_dropped_total: counters.buffered_events_dropped,
            drain_gap_max_seconds: counters.drain_gap_max_seconds,
            ring_wait_max_seconds: counters.ring_wait_max_seconds,
            resyncs_total: counters
                .resyncs
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            snapshots_installed_total: counters.snapshots_installed,
            snapshots_failed_total: counters.snapshots_failed,
            snapshots_superseded_total: counters.snapshots_superseded,
            model_drift_regions: drift.last_round_regions,
            verify_rounds_total: drift.rounds,
            verify_processes_total: drift.processes_checked,
            tracked_processes: counters.tracked,
            cpu_seconds_total,
            resident_memory_bytes,
            connections: crate::connections::stats(),
            max_map_count: self.max_map_count(),
            per_pid,
        }
    }
}

/// This daemon's CPU seconds and resident bytes.
fn own_usage() -> (f64, u64) {
    let Ok(stat) = procfs::process::Process::myself().and_then(|p| p.stat()) else {
        return (0.0, 0);
    };
    let ticks = procfs::ticks_per_second() as f64;
    let cpu = (stat.utime + stat.stime) as f64 / ticks;
    (cpu, stat.rss * procfs::page_size())
}
