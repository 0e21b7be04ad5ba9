//! `memmon top`: tracked processes, refreshed from the daemon: the rows,
//! their columns and order. The full-screen view is `top_ui`; without a
//! terminal, one table is printed.

use std::{
    collections::{HashMap, VecDeque},
    io::IsTerminal as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Args;

use memmon::{classify::RegionKind as K, client::Client, report::ProcessSummary};

use crate::{
    ps::{ListArgs, bytes_of, fetch_listing, print},
    render::{human_size, json_name},
};

/// A live view of tracked processes (like top): mapped bytes by kind, VMA
/// count against vm.max_map_count, memory syscalls per second, growth over
/// the last minute, ASLR and W^X.
///
/// Keys: ←/→ or < > choose the sort column, r reverses it, / filters by
/// comm or systemd unit (Esc clears), ↑/↓ select, Enter shows the
/// selected process's layout (Esc returns), q quits. When stdout is not a
/// terminal, prints one table and exits.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECONDS", default_value = "2")]
    interval: f64,
    #[command(flatten)]
    list: ListArgs,
}

/// The columns, in order; sorting picks one by index.
pub(crate) const COLUMNS: [&str; 16] = [
    "PID", "USER", "COMM", "UNIT", "VMAS", "%MAXMAP", "MAPPED", "TEXT", "DATA", "HEAP", "MMAP",
    "STACKS", "SYSC/S", "GROW/1M", "ASLR", "W^X",
];
/// The column sorted by at start: MAPPED.
pub(crate) const DEFAULT_SORT: usize = 6;

/// How far back growth looks.
const GROWTH_WINDOW: Duration = Duration::from_secs(60);

/// One process as shown, with what came from earlier refreshes.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub summary: ProcessSummary,
    /// VMAs ÷ vm.max_map_count, when the daemon could read the limit.
    pub map_ratio: Option<f64>,
    /// Memory syscalls per second since the previous refresh.
    pub syscall_rate: Option<f64>,
    /// Mapped bytes now minus up to a minute ago (since top started, if
    /// that is less than a minute).
    pub growth: Option<i64>,
}

impl Row {
    pub(crate) fn cells(&self) -> Vec<String> {
        let p = &self.summary;
        vec![
            p.pid.to_string(),
            p.user.clone().unwrap_or_default(),
            p.comm.clone(),
            p.unit.clone().unwrap_or_else(|| "-".into()),
            p.vmas.to_string(),
            self.map_ratio
                .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
            human_size(p.mapped_bytes),
            human_size(bytes_of(p, &[K::Text])),
            human_size(bytes_of(p, &[K::Rodata, K::Data, K::Bss])),
            human_size(bytes_of(p, &[K::Heap])),
            human_size(bytes_of(p, &[K::MmapChunk, K::Anon, K::Arena])),
            human_size(bytes_of(p, &[K::Stack, K::ThreadStack, K::Guard])),
            self.syscall_rate.map_or("-".into(), |r| format!("{r:.0}")),
            self.growth.map_or("-".into(), |g| {
                let sign = if g < 0 { "-" } else { "+" };
                format!("{sign}{}", human_size(g.unsigned_abs()))
            }),
            json_name(&p.aslr.status),
            p.wx_count.to_string(),
        ]
    }

    /// Orders by column `column` (numbers as numbers, largest first for
    /// sizes, counts and rates; text A to Z).
    fn compare(&self, other: &Row, column: usize) -> std::cmp::Ordering {
        let (a, b) = (&self.summary, &other.summary);
        let f = |x: Option<f64>| x.unwrap_or(f64::NEG_INFINITY);
        let by_kind = |kinds: &[K]| bytes_of(b, kinds).cmp(&bytes_of(a, kinds));
        match column {
            0 => a.pid.cmp(&b.pid),
            1 => a.user.cmp(&b.user),
            2 => a.comm.cmp(&b.comm),
            3 => a.unit.cmp(&b.unit),
            4 | 5 => b.vmas.cmp(&a.vmas),
            6 => b.mapped_bytes.cmp(&a.mapped_bytes),
            7 => by_kind(&[K::Text]),
            8 => by_kind(&[K::Rodata, K::Data, K::Bss]),
            9 => by_kind(&[K::Heap]),
            10 => by_kind(&[K::MmapChunk, K::Anon, K::Arena]),
            11 => by_kind(&[K::Stack, K::ThreadStack, K::Guard]),
            12 => f(other.syscall_rate).total_cmp(&f(self.syscall_rate)),
            13 => other.growth.cmp(&self.growth),
            14 => b.aslr.status.cmp(&a.aslr.status),
            _ => b.wx_count.cmp(&a.wx_count),
        }
        .then(a.pid.cmp(&b.pid))
    }
}

/// Refreshes, with the history that rates and growth need.
pub(crate) struct Feed {
    client: Client,
    args: ListArgs,
    /// Per pid (and start of its history): (when, mapped bytes, syscalls).
    history: HashMap<u32, VecDeque<(Instant, u64, u64)>>,
}

impl Feed {
    pub(crate) fn new(args: ListArgs) -> anyhow::Result<Self> {
        Ok(Self {
            client: Client::connect(&args.socket)?,
            args,
            history: HashMap::new(),
        })
    }

    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The processes now, unsorted.
    pub(crate) fn refresh(&mut self) -> anyhow::Result<Vec<Row>> {
        let (processes, max_map_count) = fetch_listing(&mut self.client, &self.args)?;
        let now = Instant::now();
        let mut seen = HashMap::new();
        let rows = processes
            .into_iter()
            .map(|summary| {
                let mut samples = self.history.remove(&summary.pid).unwrap_or_default();
                // A different process behind the same pid starts afresh.
                if samples
                    .back()
                    .is_some_and(|&(_, _, calls)| calls > summary.syscalls)
                {
                    samples.clear();
                }
                let syscall_rate = samples.back().map(|&(when, _, calls)| {
                    (summary.syscalls - calls) as f64
                        / now.duration_since(when).as_secs_f64().max(1e-3)
                });
                while samples.len() > 1 && now.duration_since(samples[1].0) >= GROWTH_WINDOW {
                    samples.pop_front();
                }
                let growth = samples
                    .front()
                    .map(|&(_, bytes, _)| summary.mapped_bytes as i64 - bytes as i64);
                samples.push_back((now, summary.mapped_bytes, summary.syscalls));
                seen.insert(summary.pid, samples);
                Row {
                    map_ratio: max_map_count
                        .filter(|&m| m > 0)
                        .map(|m| summary.vmas as f64 / m as f64),
                    summary,
                    syscall_rate,
                    growth,
                }
            })
            .collect();
        self.history = seen;
        Ok(rows)
    }
}

/// Sorts `rows` by `column` (reversed when asked) and keeps those whose
/// comm or unit contains `filter`.
pub(crate) fn arrange(rows: &mut Vec<Row>, column: usize, reverse: bool, filter: &str) {
    rows.retain(|r| {
        filter.is_empty()
            || r.summary.comm.contains(filter)
            || r.summary
                .unit
                .as_deref()
                .is_some_and(|u| u.contains(filter))
    });
    rows.sort_by(|a, b| {
        let order = a.compare(b, column);
        if reverse { order.reverse() } else { order }
    });
}

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    if !(args.interval > 0.0 && args.interval.is_finite()) {
        anyhow::bail!("--interval must be a positive number of seconds");
    }
    let json = args.list.json;
    let mut feed = Feed::new(args.list)?;
    if json || !std::io::stdout().is_terminal() {
        let mut rows = feed.refresh()?;
        arrange(&mut rows, DEFAULT_SORT, false, "");
        let summaries: Vec<ProcessSummary> = rows.iter().map(|r| r.summary.clone()).collect();
        let cells: HashMap<u32, Vec<String>> = rows
            .iter()
            .map(|r| (r.summary.pid, r.cells()[3..].to_vec()))
            .collect();
        print(&summaries, json, &COLUMNS[3..], |p| cells[&p.pid].clone())?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::top_ui::run(feed, Duration::from_secs_f64(args.interval))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: u32, comm: &str, mapped: u64, rate: Option<f64>) -> Row {
        let summary: ProcessSummary = serde_json::from_value(serde_json::json!({
            "pid": pid, "comm": comm, "uid": 0, "vmas": 3, "mapped_bytes": mapped,
            "by_kind": {}, "aslr": {"status": "full", "reasons": []}, "wx_count": 0,
            "unit": if comm == "sshd" { Some("ssh.service") } else { None },
        }))
        .unwrap();
        Row {
            summary,
            map_ratio: Some(0.5),
            syscall_rate: rate,
            growth: Some(-4096),
        }
    }

    #[test]
    fn sorts_by_column_and_filters_by_comm_or_unit() {
        let all = vec![
            row(3, "sshd", 10, Some(5.0)),
            row(1, "bash", 30, None),
            row(2, "cat", 20, Some(9.0)),
        ];
        let pids = |rows: &[Row]| rows.iter().map(|r| r.summary.pid).collect::<Vec<_>>();
        let mut rows = all.clone();
        arrange(&mut rows, DEFAULT_SORT, false, "");
        assert_eq!(pids(&rows), [1, 2, 3], "largest mapped first");
        arrange(&mut rows, 12, false, "");
        assert_eq!(pids(&rows), [2, 3, 1], "fastest first, unknown last");
        arrange(&mut rows, 0, true, "");
        assert_eq!(pids(&rows), [3, 2, 1]);
        arrange(&mut rows, 0, false, "ssh.serv");
        assert_eq!(pids(&rows), [3], "by unit");
        let mut rows = all;
        arrange(&mut rows, 0, false, "ca");
        assert_eq!(pids(&rows), [2], "by comm");
        let cells = rows[0].cells();
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(cells[5], "50.0%");
        assert_eq!(cells[13], "-4 KiB");
    }
}
