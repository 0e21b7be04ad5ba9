//! Gathering one scrape's numbers from the daemon's state.

use std::collections::{BTreeMap, HashMap};

use super::Daemon;
use crate::{
    classify::RegionKind,
    metrics::{GroupStats, MetricsSnapshot, OTHER_GROUP, cap_groups, group_name},
    report::{ProcessSummary, summarize},
    rules::{RANDOMIZE_VA_SPACE, RandomizeVaSpace},
    tracker::{CallCount, SyscallCounts},
};

/// A summary and the model version it was computed from.
pub(super) struct CachedSummary {
    applied_events: u64,
    randomize_va_space: RandomizeVaSpace,
    summary: ProcessSummary,
}

impl Daemon {
    /// The summary of `pid`, recomputed only when its model changed.
    pub(super) fn summary(
        &mut self,
        pid: u32,
        randomize_va_space: &RandomizeVaSpace,
    ) -> Option<ProcessSummary> {
        let state = self
            .tracker
            .process(pid)
            .filter(|p| !p.awaiting_snapshot())?;
        if let Some(c) = self.summaries.get(&pid)
            && c.applied_events == state.applied_events
            && c.randomize_va_space == *randomize_va_space
        {
            return Some(c.summary.clone());
        }
        let summary = summarize(state, &mut self.elf_cache, randomize_va_space);
        let cached = CachedSummary {
            applied_events: state.applied_events,
            randomize_va_space: randomize_va_space.clone(),
            summary: summary.clone(),
        };
        self.summaries.insert(pid, cached);
        Some(summary)
    }

    /// The kernel's ASLR setting now, or why it cannot be read.
    pub(super) fn randomize_va_space() -> RandomizeVaSpace {
        RandomizeVaSpace::read(std::path::Path::new(RANDOMIZE_VA_SPACE))
    }

    pub(super) fn collect_metrics(&mut self) -> MetricsSnapshot {
        self.catch_up();
        let rva = Self::randomize_va_space();
        let pids: Vec<u32> = self.tracker.processes().map(|p| p.pid).collect();
        self.summaries
            .retain(|pid, _| self.tracker.process(*pid).is_some());
        let grouping = self.config.grouping;
        let mut groups: BTreeMap<String, GroupStats> = BTreeMap::new();
        let mut aslr_processes: BTreeMap<String, u64> = BTreeMap::new();
        let mut aslr_weak: Vec<(String, Vec<String>)> = Vec::new();
        let mut per_pid: Vec<(u32, String, u64)> = Vec::new();
        let mut syscalls_by_group: HashMap<String, SyscallCounts> = HashMap::new();
        for pid in pids {
            let Some(summary) = self.summary(pid, &rva) else {
                continue;
            };
            let state = self.tracker.process(pid).expect("listed above");
            let group = group_name(grouping, &state.comm, state.cgroup.as_deref());
            syscalls_by_group
                .entry(group.clone())
                .or_default()
                .add(&state.syscalls);
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
            *aslr_processes
                .entry(summary.aslr.status.label().to_owned())
                .or_default() += 1;
            if !summary.aslr.codes.is_empty() {
                aslr_weak.push((group, summary.aslr.codes.clone()));
            }
            per_pid.push((pid, summary.comm.clone(), summary.mapped_bytes));
        }
        for ((comm, cgroup), counts) in self.tracker.retired_syscalls() {
            let group = if comm.is_empty() {
                OTHER_GROUP.to_owned()
            } else {
                group_name(grouping, comm, cgroup.as_deref())
            };
            syscalls_by_group.entry(group).or_default().add(counts);
        }
        let (groups, kept) = cap_groups(groups, self.config.top_groups);
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
        let aslr_disabled = aslr_weak
            .into_iter()
            .flat_map(|(g, codes)| {
                let g = capped(g);
                codes.into_iter().map(move |c| (g.clone(), c))
            })
            .collect();
        per_pid.sort_by_key(|p| std::cmp::Reverse(p.2));
        per_pid.truncate(self.config.per_pid_top_k);
        let (cpu_seconds_total, resident_memory_bytes) = own_usage();
        MetricsSnapshot {
            groups,
            syscalls,
            aslr_processes,
            aslr_disabled,
            events_total: self.tracker.stats.events,
            events_lost_total: self.probes.lost_events(),
            events_undecodable_total: self.stream.decode_errors,
            unpaired_exits_total: self.probes.unpaired_exits(),
            resyncs_total: self
                .tracker
                .stats
                .resyncs
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            snapshots_installed_total: self.tracker.stats.snapshots_installed,
            snapshots_failed_total: self.tracker.stats.snapshots_failed,
            model_drift_regions: self.drift.last_round_regions,
            verify_rounds_total: self.drift.rounds,
            verify_processes_total: self.drift.processes_checked,
            tracked_processes: self.tracker.len() as u64,
            cpu_seconds_total,
            resident_memory_bytes,
            connections: crate::connections::stats(),
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
