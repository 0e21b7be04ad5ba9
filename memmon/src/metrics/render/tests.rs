use std::collections::BTreeMap;

use super::*;
use crate::metrics::{CATALOG, metrics_markdown};
use crate::{
    classify::RegionKind,
    metrics::{GroupStats, cap_groups},
};

fn sample() -> MetricsSnapshot {
    let mut groups = BTreeMap::new();
    for (i, name) in ["ssh.service", "bash", "memmon"].iter().enumerate() {
        let mut g = GroupStats {
            processes: i as u64 + 1,
            brk_heap_bytes: 135_168,
            vmas_max: 6_553 * (i as u64 + 1),
            ..Default::default()
        };
        g.mapped_bytes
            .insert(RegionKind::Heap, 135_168 * (i as u64 + 1));
        g.mapped_bytes.insert(RegionKind::Text, 1 << 20);
        g.regions.insert(RegionKind::Heap, 1);
        groups.insert((*name).to_owned(), g);
    }
    let mut snap = MetricsSnapshot {
        groups,
        events_total: 10,
        events_lost_total: 2,
        tracked_processes: 6,
        ..Default::default()
    };
    let mmap = crate::tracker::CallCount {
        calls: 7,
        failures: 1,
    };
    snap.syscalls.insert(("mmap".into(), "bash".into()), mmap);
    snap.wx_transitions
        .insert(("node".into(), "created_wx".into()), 5);
    snap.aslr_processes.insert("off".into(), 1);
    snap.aslr_disabled
        .insert(("bash".into(), "addr_no_randomize".into()));
    snap.resyncs_total.insert("exec".into(), 3);
    snap.events_undecodable_total = 4;
    snap.unseen_layout_changes_total = 7;
    snap.lost_pids_full_total = 6;
    snap.stack_capture_failures_total
        .insert("collision".into(), 5);
    snap.kernel_errors_total
        .insert(("ringbuf_full".into(), "exec".into()), 2);
    snap.snapshots_installed_total = 11;
    snap.snapshots_failed_total = 1;
    snap.snapshots_superseded_total = 3;
    snap.verify_rounds_total = 8;
    snap.verify_processes_total = 128;
    snap.aslr_processes.insert("unknown".into(), 2);
    snap.cpu_seconds_total = 1.5;
    snap.resident_memory_bytes = 12 << 20;
    snap.connections.socket.refused = 9;
    snap.connections.metrics.timeouts = 13;
    snap.connections.metrics.open = 2;
    snap.connections.replies_too_large = 1;
    snap.max_map_count = Some(65_530);
    snap
}

#[test]
fn map_count_ratio_is_the_largest_process_over_the_limit() {
    let text = render_openmetrics(&sample());
    // "bash" is the second group: 2 x 6553 of 65530 VMAs.
    assert!(
        text.contains("memmon_map_count_ratio_max{group=\"bash\"} 0.2\n"),
        "{text}"
    );
    let unknown = MetricsSnapshot {
        max_map_count: None,
        ..sample()
    };
    assert!(!render_openmetrics(&unknown).contains("memmon_map_count_ratio_max{"));
}

#[test]
fn every_catalogued_metric_is_exposed() {
    let text = render_openmetrics(&sample());
    for d in CATALOG
        .iter()
        .filter(|d| d.name != "memmon_process_mapped_bytes")
    {
        assert!(
            text.lines().any(|l| l.starts_with(d.name)
                && (l[d.name.len()..].starts_with('{') || l[d.name.len()..].starts_with(' '))),
            "{} missing from:\n{text}",
            d.name
        );
    }
    assert!(
        text.contains(r#"memmon_wx_transitions_total{group="node",transition="created_wx"} 5"#),
        "{text}"
    );
    assert!(
        text.contains(r#"memmon_syscalls_total{syscall="mmap",group="bash"} 7"#),
        "{text}"
    );
    assert!(
        text.contains(r#"memmon_syscall_errors_total{syscall="mmap",group="bash"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"memmon_aslr_processes{status="off"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"memmon_aslr_processes{status="full"} 0"#),
        "{text}"
    );
    for line in [
        "memmon_events_undecodable_total 4",
        "memmon_unseen_layout_changes_total 7",
        "memmon_lost_pids_full_total 6",
        "memmon_stack_capture_failures_total{reason=\"collision\"} 5",
        "memmon_kernel_errors_total{kind=\"ringbuf_full\",event=\"exec\"} 2",
        "memmon_snapshots_installed_total 11",
        "memmon_snapshots_failed_total 1",
        "memmon_snapshots_superseded_total 3",
        "memmon_verify_rounds_total 8",
        "memmon_verify_processes_total 128",
        r#"memmon_aslr_processes{status="unknown"} 2"#,
        r#"memmon_connections_refused_total{endpoint="socket"} 9"#,
        r#"memmon_connections_refused_total{endpoint="metrics"} 0"#,
        r#"memmon_connection_timeouts_total{endpoint="metrics"} 13"#,
        r#"memmon_connections_open{endpoint="metrics"} 2"#,
        "memmon_replies_too_large_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn no_pid_label_and_no_address_unless_opted_in() {
    let text = render_openmetrics(&sample());
    assert!(!text.contains("pid="), "{text}");
    assert!(!text.contains("0x"), "{text}");
    let mut snap = sample();
    snap.per_pid.push((4242, "bash".into(), 1 << 20));
    assert!(
        render_openmetrics(&snap)
            .contains(r#"memmon_process_mapped_bytes{pid="4242",comm="bash"} 1048576"#)
    );
}

#[test]
fn prometheus_text_names_counter_families_with_total() {
    let text = to_prometheus_text(&render_openmetrics(&sample()));
    assert!(
        text.contains("# TYPE memmon_events_total counter"),
        "{text}"
    );
    assert!(text.contains("# HELP memmon_events_total "), "{text}");
    assert!(text.contains("# TYPE memmon_processes gauge"), "{text}");
    assert!(!text.contains("# EOF"));
}

#[test]
fn groups_beyond_the_top_are_summed_into_other() {
    let (capped, kept) = cap_groups(sample().groups, 1);
    assert_eq!(kept.len(), 1);
    assert!(
        kept.contains("memmon"),
        "the largest group is kept: {kept:?}"
    );
    assert_eq!(capped["other"].processes, 3);
    assert_eq!(capped.len(), 2);
}

#[test]
fn metrics_md_is_generated_from_the_catalog() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../METRICS.md");
    let want = metrics_markdown();
    if std::env::var_os("MEMMON_WRITE_METRICS_MD").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "METRICS.md is stale: run MEMMON_WRITE_METRICS_MD=1 cargo test -p memmon --lib metrics_md"
    );
}
