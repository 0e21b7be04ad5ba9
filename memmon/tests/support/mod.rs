//! Shared helpers for the root integration tests: they run the real
//! `memmon` binary, which loads the real eBPF programs, against small C
//! fixtures compiled with `cc` at test time.
//!
//! Every test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    fs,
    io::{BufRead, BufReader, Write as _},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The binary under test.
pub const MEMMON: &str = env!("CARGO_BIN_EXE_memmon");

/// The line `memmon trace` prints once its programs are attached.
pub const TRACING_LINE: &str = "memmon: tracing (";
/// The line the daemon prints once it is seeded and serving queries.
pub const DAEMON_READY_LINE: &str = "memmon: daemon ready";

/// Loading and attaching takes a few seconds on a busy machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

// ---- skipping -------------------------------------------------------------

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the real eBPF programs can be loaded here. When they cannot, the
/// test should return at once: this prints a visible `SKIPPED: <reason>`
/// line. Under `CI=true` it panics instead, so CI never skips quietly.
pub fn require_bpf() -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    match PROBE.get_or_init(probe_bpf) {
        Ok(()) => true,
        Err(reason) if is_ci() => panic!("CI=true, and the eBPF tests cannot run: {reason}"),
        Err(reason) => {
            // Straight to stderr: the test harness captures eprintln!.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
            false
        }
    }
}

fn probe_bpf() -> Result<(), String> {
    if !is_root() {
        return Err("not root: these tests load eBPF programs (run them as root)".into());
    }
    // A comm no task has: the probe only needs the programs to attach.
    let mut child = Command::new(MEMMON)
        .args(["trace", "--comm", "memmon-no-such"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {MEMMON}: {e}"))?;
    let lines = LineCollector::new(child.stderr.take().expect("piped stderr"));
    let ready = lines.wait_for(|l| l.contains(TRACING_LINE), START_TIMEOUT);
    signal(child.id() as i32, libc::SIGINT);
    let _ = wait_timeout(&mut child, Duration::from_secs(20)).or_else(|| {
        let _ = child.kill();
        child.wait().ok()
    });
    if ready.is_some() {
        Ok(())
    } else {
        Err(format!(
            "`memmon trace` could not load its eBPF programs: {}",
            lines.all().join(" | ")
        ))
    }
}

// ---- processes --------------------------------------------------------------

pub fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Waits for `child` up to `timeout`; None when it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends SIGTERM to the child if the test thread that spawned it dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; no allocation in the closure.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
}

/// Reads a child's pipe line by line on a thread: every line is kept, and
/// can be waited for.
pub struct LineCollector {
    lines: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
    reader: Option<thread::JoinHandle<()>>,
}

impl LineCollector {
    pub fn new(pipe: impl std::io::Read + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Self {
            lines,
            rx,
            reader: Some(reader),
        }
    }

    /// The first new line that satisfies `pred`, or None at the timeout or
    /// when the pipe closes.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// The next line, or None at the timeout or when the pipe closes.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits for the pipe to close and returns every line.
    pub fn finish(mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.all()
    }
}

// ---- temporary directories and fixtures ---------------------------------

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("memmon-itest-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn fixture_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"))
}

/// Compiles `tests/fixtures/<name>.c` into `dir/<name>`: the binary's name
/// (so its comm) is the fixture's name, which must fit in 15 bytes.
pub fn compile(dir: &TempDir, name: &str, extra_flags: &[&str]) -> PathBuf {
    assert!(
        name.len() <= 15,
        "fixture name {name:?} is longer than a comm (15 bytes)"
    );
    let out = dir.path().join(name);
    let output = Command::new("cc")
        .args(["-O0", "-g", "-pthread", "-Wall", "-o"])
        .arg(&out)
        .arg(fixture_source(name))
        .args(extra_flags)
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc failed for {name}.c ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

// ---- memmon trace -------------------------------------------------------------

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

/// Runs a program to completion, stdout captured, with a timeout.
pub fn run_to_end(
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> (ExitStatus, Vec<String>, u32) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let pid = child.id();
    let out = LineCollector::new(child.stdout.take().expect("piped stdout"));
    let status = wait_timeout(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{} did not finish within {timeout:?}", program.display());
    });
    (status, out.finish(), pid)
}

// ---- the daemon -------------------------------------------------------------

/// A running `memmon daemon` on a private socket. [`Daemon::start`] gives
/// one owned by the test (SIGTERM on drop); [`Daemon::shared`] one for the
/// whole test binary.
pub struct Daemon {
    child: Option<Child>,
    pid: i32,
    socket: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: Arc<TempDir>,
}

impl Daemon {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_in(Arc::new(TempDir::new("daemon")), extra)
    }

    /// As [`Daemon::start_with`], with its socket in `dir` (a restart on
    /// the socket path of a daemon that died: see [`Daemon::dir`]).
    pub fn start_in(dir: Arc<TempDir>, extra: &[&str]) -> Self {
        let socket = dir.path().join("memmon.sock");
        let mut cmd = Command::new(MEMMON);
        cmd.arg("daemon")
            .arg("--socket")
            .arg(&socket)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn memmon daemon");
        let lines = LineCollector::new(child.stderr.take().expect("piped stderr"));
        let ready = lines.wait_for(|l| l.contains(DAEMON_READY_LINE), START_TIMEOUT);
        if ready.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "memmon daemon never said `{DAEMON_READY_LINE}`; stderr: {:?}",
                lines.all()
            );
        }
        // Keep collecting stderr (for failure messages) without blocking the daemon.
        let stderr = lines.lines.clone();
        thread::spawn(move || {
            let _ = lines.finish();
        });
        let pid = child.id() as i32;
        Self {
            child: Some(child),
            pid,
            socket,
            stderr,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The directory holding the socket.
    pub fn dir(&self) -> Arc<TempDir> {
        self._dir.clone()
    }

    /// `kill -9`, as a crash would, and reaps it: nothing runs its cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The /metrics exposition now (plain HTTP/1.0 GET on loopback).
    pub fn scrape(&self) -> String {
        use std::io::Read as _;
        let url = self.metrics_url();
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_once('/').expect("URL with a path");
        let mut stream =
            std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.contains(" 200 "), "GET {url}: {head}");
        body.to_owned()
    }

    /// The daemon's /metrics URL, from its ready line.
    pub fn metrics_url(&self) -> String {
        self.stderr()
            .iter()
            .find_map(|l| l.split("metrics on ").nth(1).map(str::to_owned))
            .expect("the ready line names the metrics URL")
    }

    /// One daemon for the whole test binary. Statics are never dropped, so
    /// it is spawned from a thread that lives as long as the process, with
    /// PR_SET_PDEATHSIG: it gets SIGTERM when the test binary exits.
    pub fn shared() -> &'static Daemon {
        static SHARED: OnceLock<Result<Daemon, String>> = OnceLock::new();
        let shared = SHARED.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            thread::Builder::new()
                .name("memmon-daemon-keeper".into())
                .spawn(move || {
                    let started = std::panic::catch_unwind(Daemon::start);
                    let ok = started.is_ok();
                    let _ = tx.send(started.map_err(|panic| panic_text(&*panic)));
                    if ok {
                        loop {
                            thread::park();
                        }
                    }
                })
                .expect("spawn keeper thread");
            rx.recv().expect("keeper thread").map(|mut daemon| {
                // The keeper thread's death, not a drop, ends it; and its
                // temp dir goes at exit (the harness exits with exit(3)).
                daemon.child = None;
                let _ = SHARED_DIR.set(daemon._dir.path().to_owned());
                // SAFETY: registers a plain extern "C" fn.
                unsafe { libc::atexit(remove_shared_dir) };
                daemon
            })
        });
        // A daemon that failed to start fails every test at once, each time.
        shared
            .as_ref()
            .unwrap_or_else(|e| panic!("the shared daemon did not start: {e}"))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the daemon is still running.
    pub fn alive(&self) -> bool {
        signal(self.pid, 0)
            && fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .is_ok_and(|s| proc_state(&s) != Some('Z'))
    }

    /// `memmon verify <pid>`: (exit 0, everything it printed).
    pub fn verify(&self, pid: u32) -> (bool, String) {
        let output = Command::new(MEMMON)
            .arg("verify")
            .arg(pid.to_string())
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run memmon verify");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// Asserts that the model of `pid` agrees with /proc/PID/maps. The
    /// process is stopped, so its maps cannot change; the daemon may still
    /// be a poll interval behind on its last events, so a disagreement is
    /// retried for up to two seconds before it fails the test.
    pub fn assert_verified(&self, pid: u32, at: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (ok, text) = self.verify(pid);
            if ok {
                if attempts > 1 {
                    eprintln!("note: verify of pid {pid} at {at} passed on attempt {attempts}");
                }
                return;
            }
            if Instant::now() >= deadline {
                let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
                panic!(
                    "memmon verify {pid} failed at checkpoint `{at}` ({attempts} attempts):\n{text}\n\
                     --- /proc/{pid}/maps ---\n{maps}--- daemon stderr ---\n{}",
                    self.stderr().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, libc::SIGTERM);
            if wait_timeout(&mut child, Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

static SHARED_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_shared_dir() {
    if let Some(dir) = SHARED_DIR.get() {
        let _ = fs::remove_dir_all(dir);
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(non-text panic)".into())
}

// ---- fixtures that stop themselves ------------------------------------------

/// The state letter of /proc/PID/stat (`R`, `S`, `T`, `Z`, ...).
pub fn proc_state(stat: &str) -> Option<char> {
    // The comm may hold spaces and parentheses: the state follows the last `)`.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

pub fn state_of(pid: u32) -> Option<char> {
    proc_state(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

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

/// /proc/PID/maps of a (stopped) process.
pub fn maps_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/maps: {e}"))
}

/// The maps line whose range holds `addr`, if any.
pub fn maps_line_containing(pid: u32, addr: u64) -> Option<String> {
    maps_of(pid)
        .lines()
        .find(|l| maps_range(l).is_some_and(|(lo, hi)| lo <= addr && addr < hi))
        .map(str::to_owned)
}

/// The `start-end` range of a maps line.
pub fn maps_range(line: &str) -> Option<(u64, u64)> {
    let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        u64::from_str_radix(lo, 16).ok()?,
        u64::from_str_radix(hi, 16).ok()?,
    ))
}

/// The maps line starting exactly at `start`, if any.
pub fn maps_line_at(pid: u32, start: u64) -> Option<String> {
    let prefix = format!("{start:x}-");
    maps_of(pid)
        .lines()
        .find(|l| l.starts_with(&prefix))
        .map(str::to_owned)
}

/// The value of sample `name` + `labels` (e.g. `{reason="lost"}`, or "")
/// in a Prometheus exposition.
pub fn metric(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{labels} ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
