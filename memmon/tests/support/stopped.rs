//! Fixtures that print `checkpoint NAME key=value ...` and stop
//! themselves, so a test can compare a frozen process with the daemon.

use std::{
    collections::HashMap,
    fs,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use memmon_testkit::{proc_state, state_of};

use super::process::{LineCollector, signal, wait_timeout};

/// Polls until `pid` is stopped (state `T`).
pub fn wait_stopped(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match state_of(pid) {
            Some('T') => return,
            Some('Z') | None => panic!("pid {pid} exited while the test waited for it to stop"),
            _ => {}
        }
        if Instant::now() >= deadline {
            panic!(
                "pid {pid} did not stop within {timeout:?} (state {:?})",
                state_of(pid)
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A checkpoint line, `checkpoint NAME key=value ...`, with the
/// `key=value` lines printed since the previous checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub name: String,
    pub facts: HashMap<String, String>,
}

impl Checkpoint {
    pub fn fact(&self, key: &str) -> &str {
        self.facts.get(key).unwrap_or_else(|| {
            panic!(
                "checkpoint {} has no fact {key:?}: {:?}",
                self.name, self.facts
            )
        })
    }

    pub fn hex(&self, key: &str) -> u64 {
        let text = self.fact(key);
        u64::from_str_radix(text.trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("{key}={text} is not hex"))
    }

    pub fn num(&self, key: &str) -> u64 {
        self.fact(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key}={} is not a number", self.fact(key)))
    }
}

pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Drives a fixture that prints `checkpoint NAME` and then stops itself
/// with `raise(SIGSTOP)`. On drop, its whole process group is killed, so a
/// failing test leaves no stopped process behind.
pub struct Stopped {
    child: Child,
    pub pid: u32,
    out: LineCollector,
    pending: HashMap<String, String>,
    finished: bool,
}

impl Stopped {
    pub fn spawn(program: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let out = LineCollector::new(child.stdout.take().expect("piped stdout"));
        Self {
            pid: child.id(),
            child,
            out,
            pending: HashMap::new(),
            finished: false,
        }
    }

    /// Reads up to the next checkpoint line (which must be `name`) and
    /// waits until the fixture has stopped at it.
    pub fn checkpoint(&mut self, name: &str) -> Checkpoint {
        let cp = self.next_checkpoint();
        assert_eq!(
            cp.name, name,
            "fixture reached checkpoint {:?}, the test expected {name:?}",
            cp.name
        );
        let pid = cp
            .facts
            .get("pid")
            .and_then(|p| p.parse().ok())
            .unwrap_or(self.pid);
        wait_stopped(pid, STOP_TIMEOUT);
        cp
    }

    /// The next checkpoint line, without waiting for any stop.
    pub fn next_checkpoint(&mut self) -> Checkpoint {
        loop {
            let Some(line) = self.out.next_line(STOP_TIMEOUT) else {
                panic!(
                    "fixture pid {} printed no checkpoint within {STOP_TIMEOUT:?} (state {:?}); output: {:?}",
                    self.pid,
                    state_of(self.pid),
                    self.out.all()
                );
            };
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or_default();
            let (name, rest) = if first == "checkpoint" {
                (
                    Some(words.next().unwrap_or_default().to_owned()),
                    words.collect::<Vec<_>>(),
                )
            } else {
                (None, line.split_whitespace().collect())
            };
            for word in rest {
                if let Some((k, v)) = word.split_once('=') {
                    self.pending.insert(k.to_owned(), v.to_owned());
                }
            }
            if let Some(name) = name {
                return Checkpoint {
                    name,
                    facts: std::mem::take(&mut self.pending),
                };
            }
        }
    }

    /// SIGCONT to the fixture itself.
    pub fn resume(&self) {
        self.resume_pid(self.pid);
    }

    pub fn resume_pid(&self, pid: u32) {
        assert!(signal(pid as i32, libc::SIGCONT), "SIGCONT to {pid}");
    }

    /// [`Stopped::resume`], then [`Stopped::finish`].
    pub fn resume_and_finish(self) {
        self.resume();
        self.finish();
    }

    /// Waits for the fixture to exit and asserts it succeeded.
    pub fn finish(mut self) {
        let status = wait_timeout(&mut self.child, STOP_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "fixture pid {} did not exit (state {:?})",
                self.pid,
                state_of(self.pid)
            )
        });
        self.finished = true;
        assert!(
            status.success(),
            "fixture pid {} failed: {status}; output: {:?}",
            self.pid,
            self.out.all()
        );
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.finished {
            signal(-(self.pid as i32), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Pids of process group `pgrp`, with their state letters.
pub fn group_members(pgrp: u32) -> Vec<(u32, char)> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the comm: state ppid pgrp ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgrp)
            && let Some(state) = proc_state(&stat)
        {
            members.push((pid, state));
        }
    }
    members
}

/// Whether every thread of `pid` is stopped (state `T`): none is still
/// inside a system call whose exit the daemon has yet to see.
pub fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        fs::read_to_string(task.path().join("stat"))
            .is_ok_and(|stat| proc_state(&stat) == Some('T'))
    })
}
