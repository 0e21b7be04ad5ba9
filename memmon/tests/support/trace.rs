//! `memmon trace`: starting it, its JSON events and its summary line.

use std::{
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::process::{LineCollector, die_with_parent, signal, wait_timeout};
use super::{MEMMON, START_TIMEOUT};

/// The line `memmon trace` prints once its programs are attached.
pub const TRACING_LINE: &str = "memmon: tracing (";

/// Long outputs in failure messages: the first and last few lines.
pub fn brief(lines: &[String]) -> String {
    if lines.len() <= 8 {
        return lines.join("\n");
    }
    format!(
        "{}\n... ({} more lines) ...\n{}",
        lines[..3].join("\n"),
        lines.len() - 6,
        lines[lines.len() - 3..].join("\n")
    )
}

/// The counts of trace's last stderr line:
/// `memmon: N events, L lost, U undecodable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub lost: u64,
    pub undecodable: u64,
}

impl Summary {
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("memmon: ")?;
        let mut numbers = rest
            .split(", ")
            .map(|part| part.split(' ').next().and_then(|n| n.parse().ok()));
        let words: Vec<&str> = rest
            .split(", ")
            .filter_map(|p| p.split(' ').nth(1))
            .collect();
        if words != ["events", "lost", "undecodable"] {
            return None;
        }
        Some(Self {
            events: numbers.next()??,
            lost: numbers.next()??,
            undecodable: numbers.next()??,
        })
    }
}

pub struct TraceOutput {
    pub status: ExitStatus,
    pub events: Vec<Value>,
    pub stderr: Vec<String>,
    pub summary: Summary,
}

/// A running `memmon trace`, ready (its programs are attached) once
/// [`Trace::start`] returns. Killed on drop if not stopped.
pub struct Trace {
    child: Child,
    stdout: Option<LineCollector>,
    stderr: LineCollector,
    stopped: bool,
}

impl Trace {
    /// `memmon trace <args>`; with `capture` false stdout goes to /dev/null.
    pub fn start(args: &[&str], capture: bool) -> Self {
        Self::start_with(Path::new(MEMMON), args, capture)
    }

    /// As [`Trace::start`], with another build of memmon.
    pub fn start_with(memmon: &Path, args: &[&str], capture: bool) -> Self {
        let mut cmd = Command::new(memmon);
        cmd.arg("trace")
            .args(args)
            .stdin(Stdio::null())
            .stdout(if capture {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn memmon trace");
        let stdout = child.stdout.take().map(LineCollector::new);
        let stderr = LineCollector::new(child.stderr.take().expect("piped stderr"));
        let mut trace = Self {
            child,
            stdout,
            stderr,
            stopped: false,
        };
        if trace
            .stderr
            .wait_for(|l| l.contains(TRACING_LINE), START_TIMEOUT)
            .is_none()
        {
            let _ = trace.child.kill();
            let _ = trace.child.wait();
            trace.stopped = true;
            panic!(
                "`memmon trace {}` never said it was tracing; stderr: {:?}",
                args.join(" "),
                trace.stderr.all()
            );
        }
        trace
    }

    /// Events printed so far (captured traces only).
    pub fn events_so_far(&self) -> Vec<Value> {
        self.stdout
            .as_ref()
            .expect("trace stdout not captured")
            .all()
            .iter()
            .map(|l| parse_event(l))
            .collect()
    }

    /// Waits until an event satisfying `pred` has been printed.
    pub fn wait_for_event(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.events_so_far().iter().any(&pred) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.all()
    }

    /// SIGINT, as Ctrl-C would; returns what it printed.
    pub fn stop(mut self) -> TraceOutput {
        signal(self.child.id() as i32, libc::SIGINT);
        let status = wait_timeout(&mut self.child, Duration::from_secs(30)).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("memmon trace did not stop within 30 s of SIGINT");
        });
        self.stopped = true;
        let lines = self
            .stdout
            .take()
            .map(LineCollector::finish)
            .unwrap_or_default();
        let stderr =
            std::mem::replace(&mut self.stderr, LineCollector::new(std::io::empty())).finish();
        let last = stderr.last().cloned().unwrap_or_default();
        let summary = Summary::parse(&last).unwrap_or_else(|| {
            panic!("the last stderr line of memmon trace is not a summary: {stderr:?} ({status})")
        });
        TraceOutput {
            status,
            events: lines.iter().map(|l| parse_event(l)).collect(),
            stderr,
            summary,
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_event(line: &str) -> Value {
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("memmon trace --json printed a non-JSON line ({e}): {line:?}"))
}
