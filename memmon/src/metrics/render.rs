//! Snapshot -> exposition text, and the catalog METRICS.md is made from.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{MetricsSnapshot, catalog::help};
use crate::connections::EndpointStats;
use crate::rules::AslrStatus;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn gauges(
    registry: &mut Registry,
    name: &'static str,
    rows: impl IntoIterator<Item = (Labels, i64)>,
) {
    let family = Family::<Labels, Gauge>::default();
    for (set, value) in rows {
        family.get_or_create(&set).set(value);
    }
    registry.register(name, help(name), family);
}

fn counters(
    registry: &mut Registry,
    name: &'static str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (set, value) in rows {
        family.get_or_create(&set).inc_by(value);
    }
    let base = name.strip_suffix("_total").expect("counters end in _total");
    registry.register(base, help(name), family);
}

/// A metric without labels (a family would print `name{} value`).
fn gauge(registry: &mut Registry, name: &'static str, value: i64) {
    let gauge = Gauge::<i64>::default();
    gauge.set(value);
    registry.register(name, help(name), gauge);
}

fn counter(registry: &mut Registry, name: &'static str, value: u64) {
    let counter = Counter::<u64>::default();
    counter.inc_by(value);
    let base = name.strip_suffix("_total").expect("counters end in _total");
    registry.register(base, help(name), counter);
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The OpenMetrics text exposition of `snap`.
pub fn render_openmetrics(snap: &MetricsSnapshot) -> String {
    let mut r = Registry::default();
    let per_kind = |pick: fn(
        &super::GroupStats,
    )
        -> &std::collections::BTreeMap<crate::classify::RegionKind, u64>| {
        snap.groups
            .iter()
            .flat_map(move |(g, s)| {
                pick(s)
                    .iter()
                    .map(move |(k, v)| (labels(&[("group", g), ("kind", k.as_str())]), clamp(*v)))
            })
            .collect::<Vec<_>>()
    };
    gauges(&mut r, "memmon_mapped_bytes", per_kind(|s| &s.mapped_bytes));
    gauges(&mut r, "memmon_regions", per_kind(|s| &s.regions));
    let per_group = |f: fn(&super::GroupStats) -> u64| {
        snap.groups
            .iter()
            .map(move |(g, s)| (labels(&[("group", g)]), clamp(f(s))))
            .collect::<Vec<_>>()
    };
    gauges(&mut r, "memmon_processes", per_group(|s| s.processes));
    gauges(
        &mut r,
        "memmon_brk_heap_bytes",
        per_group(|s| s.brk_heap_bytes),
    );
    gauges(&mut r, "memmon_wx_regions", per_group(|s| s.wx_regions));
    if let Some(limit) = snap.max_map_count.filter(|&m| m > 0) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (g, s) in &snap.groups {
            family
                .get_or_create(&labels(&[("group", g)]))
                .set(s.vmas_max as f64 / limit as f64);
        }
        r.register(
            "memmon_map_count_ratio_max",
            help("memmon_map_count_ratio_max"),
            family,
        );
    }
    gauges(
        &mut r,
        "memmon_aslr_processes",
        AslrStatus::ALL.map(|s| {
            (
                labels(&[("status", s.label())]),
                clamp(snap.aslr_processes.get(s.label()).copied().unwrap_or(0)),
            )
        }),
    );
    gauges(
        &mut r,
        "memmon_aslr_disabled_info",
        snap.aslr_disabled
            .iter()
            .map(|(g, reason)| (labels(&[("group", g), ("reason", reason)]), 1)),
    );
    counters(
        &mut r,
        "memmon_syscalls_total",
        snap.syscalls
            .iter()
            .map(|((sc, g), c)| (labels(&[("syscall", sc), ("group", g)]), c.calls)),
    );
    counters(
        &mut r,
        "memmon_syscall_errors_total",
        snap.syscalls
            .iter()
            .map(|((sc, g), c)| (labels(&[("syscall", sc), ("group", g)]), c.failures)),
    );
    counters(
        &mut r,
        "memmon_wx_transitions_total",
        snap.wx_transitions
            .iter()
            .map(|((g, t), n)| (labels(&[("group", g), ("transition", t)]), *n)),
    );
    counters(
        &mut r,
        "memmon_resyncs_total",
        snap.resyncs_total
            .iter()
            .map(|(reason, n)| (labels(&[("reason", reason)]), *n)),
    );
    counters(
        &mut r,
        "memmon_stack_capture_failures_total",
        snap.stack_capture_failures_total
            .iter()
            .map(|(reason, n)| (labels(&[("reason", reason)]), *n)),
    );
    counters(
        &mut r,
        "memmon_kernel_errors_total",
        snap.kernel_errors_total
            .iter()
            .map(|((kind, event), n)| (labels(&[("kind", kind), ("event", event)]), *n)),
    );
    let per_endpoint = |f: fn(&EndpointStats) -> u64| {
        snap.connections
            .by_endpoint()
            .map(|(endpoint, stats)| (labels(&[("endpoint", endpoint)]), f(&stats)))
    };
    gauges(
        &mut r,
        "memmon_connections_open",
        per_endpoint(|s| s.open).map(|(l, v)| (l, clamp(v))),
    );
    counters(
        &mut r,
        "memmon_connections_refused_total",
        per_endpoint(|s| s.refused),
    );
    counters(
        &mut r,
        "memmon_connections_evicted_total",
        per_endpoint(|s| s.evicted),
    );
    counters(
        &mut r,
        "memmon_connection_timeouts_total",
        per_endpoint(|s| s.timeouts),
    );
    for (name, value) in [
        (
            "memmon_replies_too_large_total",
            snap.connections.replies_too_large,
        ),
        ("memmon_events_total", snap.events_total),
        ("memmon_events_lost_total", snap.events_lost_total),
        (
            "memmon_events_undecodable_total",
            snap.events_undecodable_total,
        ),
        (
            "memmon_unseen_layout_changes_total",
            snap.unseen_layout_changes_total,
        ),
        ("memmon_lost_pids_full_total", snap.lost_pids_full_total),
        (
            "memmon_buffered_events_dropped_total",
            snap.buffered_events_dropped_total,
        ),
        (
            "memmon_snapshots_installed_total",
            snap.snapshots_installed_total,
        ),
        ("memmon_snapshots_failed_total", snap.snapshots_failed_total),
        (
            "memmon_snapshots_superseded_total",
            snap.snapshots_superseded_total,
        ),
        ("memmon_verify_rounds_total", snap.verify_rounds_total),
        ("memmon_verify_processes_total", snap.verify_processes_total),
    ] {
        counter(&mut r, name, value);
    }
    for (name, value) in [
        ("memmon_model_drift_regions", snap.model_drift_regions),
        ("memmon_tracked_processes", snap.tracked_processes),
    ] {
        gauge(&mut r, name, clamp(value));
    }
    gauges(
        &mut r,
        "memmon_build_info",
        [(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1)],
    );
    if !snap.per_pid.is_empty() {
        gauges(
            &mut r,
            "memmon_process_mapped_bytes",
            snap.per_pid.iter().map(|(pid, comm, bytes)| {
                (
                    labels(&[("pid", &pid.to_string()), ("comm", comm)]),
                    clamp(*bytes),
                )
            }),
        );
    }
    let cpu = Counter::<f64, AtomicU64>::default();
    cpu.inc_by(snap.cpu_seconds_total);
    r.register(
        "process_cpu_seconds",
        help("process_cpu_seconds_total"),
        cpu,
    );
    gauge(
        &mut r,
        "process_resident_memory_bytes",
        clamp(snap.resident_memory_bytes),
    );
    let drain_gap = Gauge::<f64, AtomicU64>::default();
    drain_gap.set(snap.drain_gap_max_seconds);
    r.register(
        "memmon_drain_gap_max_seconds",
        help("memmon_drain_gap_max_seconds"),
        drain_gap,
    );
    let ring_wait = Gauge::<f64, AtomicU64>::default();
    ring_wait.set(snap.ring_wait_max_seconds);
    r.register(
        "memmon_ring_wait_max_seconds",
        help("memmon_ring_wait_max_seconds"),
        ring_wait,
    );
    let mut out = String::new();
    encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

/// The same exposition in the Prometheus text format 0.0.4, for scrapers
/// that do not ask for OpenMetrics: counter families are named with their
/// `_total` suffix and the `# EOF` trailer is dropped.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# TYPE ", "# HELP "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
