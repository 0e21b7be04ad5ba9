//! In-kernel cost of a tracer's programs, from the kernel's own BPF
//! statistics (`kernel.bpf_stats_enabled=1`): each program's cumulative
//! `run_time_ns` and `run_cnt`, as `bpftool prog show` prints them. A
//! tracer's programs are those its process holds open (/proc/PID/fdinfo
//! `prog_id`): Debian's bpftool prints no `pids`.

use std::collections::HashMap;
use std::process::Command;

use anyhow::Result;

use crate::env::output;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Statistics on while alive; the previous setting comes back on drop.
pub(super) struct StatsOn {
    previous: String,
}

impl StatsOn {
    pub(super) fn enable() -> Result<Self> {
        let previous = std::fs::read_to_string(SYSCTL)?.trim().to_owned();
        std::fs::write(SYSCTL, "1")?;
        Ok(Self { previous })
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.previous);
    }
}

/// One program's counters at one moment.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Prog {
    pub(super) id: u32,
    pub(super) name: String,
    pub(super) run_time_ns: u64,
    pub(super) run_cnt: u64,
}

/// Every loaded program, from `bpftool prog show`'s text.
pub(super) fn snapshot() -> Result<Vec<Prog>> {
    Ok(parse(&output(
        Command::new("bpftool").args(["prog", "show"]),
    )?))
}

fn parse(text: &str) -> Vec<Prog> {
    let mut progs: Vec<Prog> = Vec::new();
    // `ID: TYPE  name NAME  tag T  gpl run_time_ns N run_cnt N`, then
    // indented detail lines.
    for line in text.lines().filter(|l| !l.starts_with(char::is_whitespace)) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            let at = words.iter().position(|w| *w == key)?;
            words.get(at + 1).copied()
        };
        let Some(id) = words
            .first()
            .and_then(|w| w.strip_suffix(':'))
            .and_then(|id| id.parse().ok())
        else {
            continue;
        };
        let number = |key: &str| after(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        progs.push(Prog {
            id,
            name: after("name").unwrap_or("?").to_owned(),
            run_time_ns: number("run_time_ns"),
            run_cnt: number("run_cnt"),
        });
    }
    progs
}

/// Ids of the BPF programs `pid` holds open.
pub(super) fn programs_of(pid: u32) -> Vec<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf-prog")
        })
        .filter_map(|fd| {
            let name = fd.file_name();
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", name.to_string_lossy()))
                    .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

/// One program's share of a measured window.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ProgCost {
    pub(super) name: String,
    pub(super) ns_per_run: f64,
    /// Runs per loop iteration (a pair), rounded: how many of the loop's
    /// syscalls it is attached to. Other processes' calls in the window
    /// add a fraction that the rounding drops.
    pub(super) runs_per_pair: f64,
}

/// The in-kernel cost of the programs `owned` over a window of `pairs` loop
/// iterations: each program that ran at least once per pair, and their sum
/// per pair (ns per run × runs per pair).
pub(super) fn window(
    before: &[Prog],
    after: &[Prog],
    owned: &[u32],
    pairs: f64,
) -> (f64, Vec<ProgCost>) {
    let earlier: HashMap<u32, &Prog> = before.iter().map(|p| (p.id, p)).collect();
    let mut costs = Vec::new();
    for prog in after.iter().filter(|p| owned.contains(&p.id)) {
        let (t0, n0) = earlier
            .get(&prog.id)
            .map_or((0, 0), |p| (p.run_time_ns, p.run_cnt));
        let runs = prog.run_cnt.saturating_sub(n0) as f64;
        let per_pair = (runs / pairs).round();
        if per_pair < 1.0 {
            continue;
        }
        costs.push(ProgCost {
            name: prog.name.clone(),
            ns_per_run: prog.run_time_ns.saturating_sub(t0) as f64 / runs,
            runs_per_pair: per_pair,
        });
    }
    let total = costs.iter().map(|c| c.ns_per_run * c.runs_per_pair).sum();
    (total, costs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
12: tracepoint  name sys_exit_memory  tag 0123456789abcdef  gpl run_time_ns 5000 run_cnt 20
\tloaded_at 2026-12-02T15:00:00+0000  uid 0
\txlated 512B  jited 300B  memlock 4096B  map_ids 3,4
13: tracepoint  name sched_process_e  tag 0123456789abcdef  gpl run_time_ns 90 run_cnt 1
14: kprobe  name other  tag 0123456789abcdef
";

    #[test]
    fn bpftool_text_is_parsed() {
        let progs = parse(SHOW);
        assert_eq!(progs.len(), 3);
        assert_eq!(progs[0].id, 12);
        assert_eq!(progs[0].name, "sys_exit_memory");
        assert_eq!((progs[0].run_time_ns, progs[0].run_cnt), (5000, 20));
        assert_eq!(progs[2].run_cnt, 0);
    }

    #[test]
    fn a_window_counts_only_the_owners_programs_that_the_loop_ran() {
        let before = parse(SHOW);
        let mut after = before.clone();
        after[0].run_time_ns += 400 * 2_000;
        after[0].run_cnt += 2_010; // 1,000 pairs, plus others' calls
        after[1].run_cnt += 3;
        after[2].run_cnt += 5_000;
        let (per_pair, costs) = window(&before, &after, &[12, 13], 1_000.0);
        assert_eq!(costs.len(), 1);
        assert_eq!(costs[0].runs_per_pair, 2.0);
        assert!((costs[0].ns_per_run - 398.0).abs() < 1.0, "{costs:?}");
        assert!((per_pair - 796.0).abs() < 2.0, "{per_pair}");
    }
}
