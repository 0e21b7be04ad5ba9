//! Every metric memmon exports, with its help text: registration reads
//! it, and METRICS.md is generated from it.

/// One exported metric, as documented in METRICS.md.
#[derive(Clone, Copy, Debug)]
pub struct MetricDoc {
    /// The sample name as scraped (counters end in `_total`).
    pub name: &'static str,
    pub kind: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn doc(
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDoc {
    MetricDoc {
        name,
        kind,
        labels,
        help,
    }
}

/// Every metric memmon exports; registration reads its help text from here.
pub const CATALOG: &[MetricDoc] = &[
    doc(
        "memmon_mapped_bytes",
        "gauge",
        &["group", "kind"],
        "Bytes mapped by the group's processes, by region kind (text, heap, arena, thread-stack, ...).",
    ),
    doc(
        "memmon_regions",
        "gauge",
        &["group", "kind"],
        "Mapped regions (VMAs) of the group's processes, by region kind.",
    ),
    doc(
        "memmon_processes",
        "gauge",
        &["group"],
        "Tracked processes in the group.",
    ),
    doc(
        "memmon_brk_heap_bytes",
        "gauge",
        &["group"],
        "Bytes of brk heap ([heap]) of the group's processes.",
    ),
    doc(
        "memmon_wx_regions",
        "gauge",
        &["group"],
        "Regions that are writable and executable, or executable and anonymous.",
    ),
    doc(
        "memmon_map_count_ratio_max",
        "gauge",
        &["group"],
        "The highest VMA count of the group's processes divided by vm.max_map_count: at 1, mmap and mprotect fail with ENOMEM.",
    ),
    doc(
        "memmon_aslr_processes",
        "gauge",
        &["status"],
        "Tracked processes by ASLR status: full, partial, off, or unknown when kernel.randomize_va_space cannot be read.",
    ),
    doc(
        "memmon_aslr_disabled_info",
        "gauge",
        &["group", "reason"],
        "1 for each group with a process whose ASLR is weakened, by reason (randomize_va_space_0, randomize_va_space_1, addr_no_randomize, non_pie).",
    ),
    doc(
        "memmon_syscalls_total",
        "counter",
        &["syscall", "group"],
        "Memory syscalls seen, by syscall and group.",
    ),
    doc(
        "memmon_syscall_errors_total",
        "counter",
        &["syscall", "group"],
        "Memory syscalls that failed (returned -errno), by syscall and group.",
    ),
    doc(
        "memmon_wx_transitions_total",
        "counter",
        &["group", "transition"],
        "W^X transitions made by the group's processes (exited ones included): created_wx (memory made writable and executable), w_to_x (writable memory made executable: the JIT pattern), x_to_w (executable memory made writable), anon_exec (executable memory with no file behind it).",
    ),
    doc(
        "memmon_events_total",
        "counter",
        &[],
        "Events read from the kernel's ring buffer.",
    ),
    doc(
        "memmon_events_lost_total",
        "counter",
        &[],
        "Events the kernel could not queue because the ring buffer was full.",
    ),
    doc(
        "memmon_events_undecodable_total",
        "counter",
        &[],
        "Ring-buffer records that could not be decoded and were dropped (a kernel/daemon mismatch).",
    ),
    doc(
        "memmon_unseen_layout_changes_total",
        "counter",
        &[],
        "Times a process took its mmap lock for writing inside a syscall the syscall tracepoints do not show (compat syscalls from 32-bit code, or syscalls memmon does not model, e.g. madvise, mlock, map_shadow_stack); each resyncs its process (reason lost).",
    ),
    doc(
        "memmon_lost_pids_full_total",
        "counter",
        &[],
        "Times the kernel could not record which process lost an event because its lost-process map was full; each resyncs every process.",
    ),
    doc(
        "memmon_kernel_errors_total",
        "counter",
        &["kind", "event"],
        "Error paths the kernel programs took, by what failed (kind: ringbuf_full, a record dropped because the ring buffer was full, which resyncs its process; read_call_site, read_io_setup_ring, read_mapped_file, read_vma_name, read_record, read_child_task: a read the event needed failed, and the field is left empty) and the event it was for (syscall, file_mmap, exec, fork, exit, vma_name). memmon_events_lost_total is the sum of the ringbuf_full series.",
    ),
    doc(
        "memmon_stack_capture_failures_total",
        "counter",
        &["reason"],
        "User stacks (stacks = true) the kernel could not store in its bounded stack map, by reason: map_full (no free entry), collision (the stack's bucket holds another stack; ids are never reused), other (e.g. no user stack to walk). Those events carry no stack id.",
    ),
    doc(
        "memmon_resyncs_total",
        "counter",
        &["reason"],
        "Process models (re)read from /proc, by reason (unknown, exec, fork, lost, unresolved, drift, overflow, unmodelled, partial_failure: a failed mprotect, MAP_FIXED mmap or fixed mremap that may have changed part of its range).",
    ),
    doc(
        "memmon_buffered_events_dropped_total",
        "counter",
        &[],
        "Events dropped from the buffers of processes awaiting a /proc snapshot (per process or over the global budget); each such process is resynced (resyncs_total{reason=\"overflow\"}).",
    ),
    doc(
        "memmon_drain_gap_max_seconds",
        "gauge",
        &[],
        "The longest stretch the daemon's loop spent between two reads of the ring buffer while busy (applying one batch, handling one message) since the previous scrape.",
    ),
    doc(
        "memmon_ring_wait_max_seconds",
        "gauge",
        &[],
        "The longest a record waited in the ring buffer before the daemon read it (its kernel CLOCK_MONOTONIC timestamp to the start of the drain), since the previous scrape: loop work, the poll interval and CPU starvation alike.",
    ),
    doc(
        "memmon_snapshots_installed_total",
        "counter",
        &[],
        "Snapshots of /proc/PID/maps installed as process models.",
    ),
    doc(
        "memmon_snapshots_failed_total",
        "counter",
        &[],
        "Snapshots that could not be taken (the process exited, or /proc refused).",
    ),
    doc(
        "memmon_snapshots_superseded_total",
        "counter",
        &[],
        "Snapshots (or failures) dropped because they answered a request the process no longer awaited: it was forked anew under that pid, or resynced since.",
    ),
    doc(
        "memmon_model_drift_regions",
        "gauge",
        &[],
        "Differences between models and /proc/PID/maps found by the last periodic verification round.",
    ),
    doc(
        "memmon_verify_rounds_total",
        "counter",
        &[],
        "Periodic verification rounds run (see verify_interval).",
    ),
    doc(
        "memmon_verify_processes_total",
        "counter",
        &[],
        "Process models compared with /proc/PID/maps by periodic verification.",
    ),
    doc(
        "memmon_tracked_processes",
        "gauge",
        &[],
        "Processes with a live model.",
    ),
    doc(
        "memmon_connections_open",
        "gauge",
        &["endpoint"],
        "Open connections to the /metrics endpoint (metrics) or the query socket (socket).",
    ),
    doc(
        "memmon_connections_refused_total",
        "counter",
        &["endpoint"],
        "Connections closed at once because the connection cap was reached and every open connection was busy.",
    ),
    doc(
        "memmon_connections_evicted_total",
        "counter",
        &["endpoint"],
        "Idle connections (no complete request yet, or between requests) closed to make room for a new one at the cap.",
    ),
    doc(
        "memmon_connection_timeouts_total",
        "counter",
        &["endpoint"],
        "Connections closed because the peer sent nothing or too slowly, did not read its reply, or outlived the connection lifetime.",
    ),
    doc(
        "memmon_replies_too_large_total",
        "counter",
        &[],
        "Query replies over the protocol's size limit, answered with a too_large error instead.",
    ),
    doc(
        "memmon_build_info",
        "gauge",
        &["version"],
        "Always 1; the version label says which memmon runs.",
    ),
    doc(
        "memmon_process_mapped_bytes",
        "gauge",
        &["pid", "comm"],
        "Opt-in (per_pid_top_k): bytes mapped by each of the largest processes.",
    ),
    doc(
        "process_cpu_seconds_total",
        "counter",
        &[],
        "CPU time the memmon daemon itself used, in seconds.",
    ),
    doc(
        "process_resident_memory_bytes",
        "gauge",
        &[],
        "Resident memory of the memmon daemon itself, in bytes.",
    ),
];

pub(super) fn help(name: &str) -> &'static str {
    CATALOG
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.help)
        .expect("metric in CATALOG")
}

/// METRICS.md, generated from [`CATALOG`].
pub fn metrics_markdown() -> String {
    let mut out = format!(
        "# memmon metrics\n\nGenerated from `memmon/src/metrics/catalog.rs` (a test fails when this file is stale; \
         regenerate with `MEMMON_WRITE_METRICS_MD=1 cargo test -p memmon --lib metrics_md`).\n\n\
         Served at `http://{}/metrics` by default (`metrics_addr`). No metric has a pid label \
         (unless `per_pid_top_k` is set) and none carries an address. `group` is the process's systemd unit, \
         else its comm (`grouping` in the config), capped to the `top_groups` largest by mapped bytes plus `other`.\n\n\
         | metric | type | labels | meaning |\n| --- | --- | --- | --- |\n",
        crate::config::DEFAULT_METRICS_ADDR
    );
    for d in CATALOG {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.name,
            d.kind,
            d.labels.join(", "),
            d.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::CATALOG;
    use crate::tracker::SeedReason;

    /// The resync help lists the reasons by hand (help texts are
    /// constants): it must name each label the counter can carry, in order.
    #[test]
    fn resync_help_names_every_reason() {
        let help = CATALOG
            .iter()
            .find(|m| m.name == "memmon_resyncs_total")
            .expect("memmon_resyncs_total is in the catalog")
            .help;
        // "... by reason (unknown, exec, ..., partial_failure: what it is)."
        let listed: Vec<&str> = help
            .split_once("by reason (")
            .and_then(|(_, rest)| rest.split_once(':'))
            .map_or(Vec::new(), |(list, _)| list.split(", ").collect());
        let labels: Vec<&str> = SeedReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(listed, labels, "update the help of memmon_resyncs_total");
    }
}
