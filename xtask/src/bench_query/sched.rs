//! Whether a long drain gap is the loop's own work or the scheduler's:
//! the loop thread's CPU time and run-queue wait from its schedstat
//! (`/proc/PID/task/TID/schedstat`: ns on CPU, ns runnable but waiting,
//! timeslices), and with bpftrace the longest single wait for a CPU
//! (wakeup or preemption to the next switch-in). A gap much longer than
//! the loop's CPU time in its window, and about as long as one run-queue
//! wait, is the machine's load, not the loop's.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench_support::{Reaper, state_of};

/// The loop runs on the daemon's main thread (a current-thread runtime).
pub(super) fn loop_tid(daemon_pid: u32) -> u32 {
    daemon_pid
}

/// The thread's nice value (field 19 of its stat).
pub(super) fn nice_of(pid: u32, tid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let after_comm = stat.get(stat.rfind(')')? + 2..)?;
    after_comm.split_whitespace().nth(16)?.parse().ok()
}

/// One reading of a thread's schedstat.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SchedStat {
    pub on_cpu: Duration,
    pub waiting: Duration,
    pub slices: u64,
}

impl SchedStat {
    pub(super) fn read(pid: u32, tid: u32) -> Result<Self> {
        let path = format!("/proc/{pid}/task/{tid}/schedstat");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_schedstat(&text).with_context(|| format!("{path}: {text:?}"))
    }

    /// What happened between `before` and `self`.
    pub(super) fn since(&self, before: &Self) -> Self {
        Self {
            on_cpu: self.on_cpu.saturating_sub(before.on_cpu),
            waiting: self.waiting.saturating_sub(before.waiting),
            slices: self.slices.saturating_sub(before.slices),
        }
    }
}

fn parse_schedstat(text: &str) -> Option<SchedStat> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some(SchedStat {
        on_cpu: Duration::from_nanos(fields.next()??),
        waiting: Duration::from_nanos(fields.next()??),
        slices: fields.next()??,
    })
}

/// bpftrace timing each of the thread's waits for a CPU.
pub(super) struct RunQueueWatch {
    pid: u32,
    out: PathBuf,
}

/// The longest and total run-queue wait, and how many waits.
pub(super) struct RunQueueWaits {
    pub longest: Duration,
    pub total: Duration,
    pub count: u64,
}

const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

fn script(tid: u32) -> String {
    // A wakeup or a switch-out (preempted or yielding) starts a wait, the
    // next switch-in ends it; a task that blocked is woken before it runs
    // again, so its sleep is not counted.
    format!(
        r#"BEGIN {{ printf("bench: attached\n"); }}
tracepoint:sched:sched_wakeup, tracepoint:sched:sched_wakeup_new /args->pid == {tid}/ {{ @q = nsecs; }}
tracepoint:sched:sched_switch /args->prev_pid == {tid}/ {{ @q = nsecs; }}
tracepoint:sched:sched_switch /args->next_pid == {tid}/ {{
  if (@q > 0) {{ $d = nsecs - @q; @wait_max_ns = max($d); @wait_sum_ns = sum($d); @waits = count(); }}
  @q = 0;
}}
END {{ clear(@q); }}
"#
    )
}

impl RunQueueWatch {
    pub(super) fn start(reaper: &mut Reaper, scratch: &Path, tid: u32) -> Result<Self> {
        let out = scratch.join(format!("runqueue-{tid}-{}.out", next_watch()));
        let pid = reaper.spawn_bpftrace(&script(tid), &out)?;
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.contains("bench: attached") {
                return Ok(Self { pid, out });
            }
            if state_of(pid).is_none_or(|s| s == 'Z') {
                bail!("bpftrace exited before attaching: {}", text.trim());
            }
            if Instant::now() > deadline {
                bail!("bpftrace did not attach within {ATTACH_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops bpftrace (SIGINT prints its maps) and reads them.
    pub(super) fn stop(self, reaper: &mut Reaper) -> Result<RunQueueWaits> {
        reaper.stop(self.pid, "INT");
        let text = std::fs::read_to_string(&self.out)?;
        parse_waits(&text).with_context(|| format!("no run-queue waits in: {}", text.trim()))
    }
}

/// A distinct number per watch in one run, for its output file's name.
fn next_watch() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn parse_waits(text: &str) -> Option<RunQueueWaits> {
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(RunQueueWaits {
        longest: Duration::from_nanos(value("@wait_max_ns")?),
        total: Duration::from_nanos(value("@wait_sum_ns")?),
        count: value("@waits")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_and_bpftrace_maps_are_parsed() {
        let s = parse_schedstat("729246849 1059789976 7075\n").unwrap();
        assert_eq!(s.on_cpu, Duration::from_nanos(729_246_849));
        assert_eq!(s.waiting, Duration::from_nanos(1_059_789_976));
        assert_eq!(s.slices, 7075);
        assert!(parse_schedstat("1 2").is_none());
        let w = parse_waits(
            "Attaching 6 probes...\nbench: attached\n\n@waits: 568\n@wait_max_ns: 20112033\n@wait_sum_ns: 202939098\n",
        )
        .unwrap();
        assert_eq!(
            (w.longest, w.total, w.count),
            (
                Duration::from_nanos(20_112_033),
                Duration::from_nanos(202_939_098),
                568
            )
        );
        assert!(parse_waits("bench: attached\n").is_none());
    }
}
