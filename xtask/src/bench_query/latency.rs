//! `memmon query` (JSON and table) against `pmap` on the same process,
//! each a fresh command as a user would run it, interleaved so that both
//! see the same machine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What is timed: the command line after the program.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tool {
    QueryJson,
    QueryTable,
    Pmap,
}

impl Tool {
    pub(super) const ALL: [Tool; 3] = [Tool::QueryJson, Tool::QueryTable, Tool::Pmap];

    pub(super) fn name(self) -> &'static str {
        match self {
            Tool::QueryJson => "memmon query --json",
            Tool::QueryTable => "memmon query (table)",
            Tool::Pmap => "pmap",
        }
    }

    /// The command for `pid`, its output discarded (a pipe to a reader
    /// would time the reader too).
    pub(super) fn command(self, memmon: &Path, socket: &Path, pid: u32) -> Command {
        let mut cmd = match self {
            Tool::Pmap => Command::new("pmap"),
            Tool::QueryJson | Tool::QueryTable => {
                let mut cmd = Command::new(memmon);
                cmd.arg("query").arg("--socket").arg(socket);
                if self == Tool::QueryJson {
                    cmd.arg("--json");
                }
                cmd
            }
        };
        cmd.arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }
}

/// One run of `cmd`, start to exit.
pub(super) fn time_once(cmd: &mut Command) -> Result<Duration> {
    let started = Instant::now();
    let out = cmd.output().context("running a timed command")?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// Nearest-rank percentile of sorted `samples`.
pub(super) fn percentile(samples: &[Duration], p: usize) -> Duration {
    let n = samples.len();
    samples[(n * p).div_ceil(100).clamp(1, n) - 1]
}

/// p50 and p99 of each tool over `runs` interleaved rounds (the order
/// rotates each round), after one untimed warm-up each.
pub(super) fn compare(
    memmon: &Path,
    socket: &Path,
    pid: u32,
    runs: usize,
) -> Result<Vec<(Tool, Duration, Duration)>> {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); Tool::ALL.len()];
    for tool in Tool::ALL {
        time_once(&mut tool.command(memmon, socket, pid))?;
    }
    for round in 0..runs {
        for k in 0..Tool::ALL.len() {
            let i = (round + k) % Tool::ALL.len();
            samples[i].push(time_once(&mut Tool::ALL[i].command(memmon, socket, pid))?);
        }
    }
    Ok(Tool::ALL
        .iter()
        .zip(&mut samples)
        .map(|(tool, s)| {
            s.sort();
            (*tool, percentile(s, 50), percentile(s, 99))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50), Duration::from_millis(50));
        assert_eq!(percentile(&s, 99), Duration::from_millis(99));
        assert_eq!(percentile(&s[..1], 99), Duration::from_millis(1));
    }
}
