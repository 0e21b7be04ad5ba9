//! `memmon daemon` on a private socket, for one test or a whole binary.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    thread,
    time::{Duration, Instant},
};

use memmon_testkit::{
    DAEMON_READY_LINE, TempDir, daemon_command, http_get, metrics_url, proc_state,
};

use super::process::{LineCollector, die_with_parent, output_text, signal, wait_timeout};
use super::{MEMMON, START_TIMEOUT};

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
        let mut cmd = daemon_command(Path::new(MEMMON), &socket);
        cmd.args(extra);
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
        let stderr = lines.shared();
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
        let url = self.metrics_url();
        http_get(&url, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The daemon's /metrics URL, from its ready line.
    pub fn metrics_url(&self) -> String {
        self.stderr()
            .iter()
            .find_map(|l| metrics_url(l).map(str::to_owned))
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
        let text = output_text(&output);
        (output.status.success(), text)
    }

    /// `memmon ARGS --socket ...`'s stdout and stderr, for failure reports.
    pub fn run_cli(&self, args: &[&str]) -> String {
        let output = Command::new(MEMMON)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run memmon");
        output_text(&output)
    }

    /// Polls `memmon verify PID` every 100 ms until it agrees or
    /// `deadline` passes: the attempts it took, or the attempts and the
    /// last report.
    pub fn verify_until(&self, pid: u32, deadline: Instant) -> Result<u32, (u32, String)> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (ok, text) = self.verify(pid);
            if ok {
                return Ok(attempts);
            }
            if Instant::now() >= deadline {
                return Err((attempts, text));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails the test: `memmon verify PID` (`what`) never agreed; shows its
    /// last `report`, /proc/PID/maps and the daemon's stderr.
    pub fn verify_failed(&self, pid: u32, what: &str, report: &str) -> ! {
        panic!(
            "memmon verify {pid} {what} never agreed:\n{report}\n--- /proc/{pid}/maps ---\n{}\
             --- daemon stderr ---\n{}",
            fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default(),
            self.stderr().join("\n")
        )
    }

    /// Asserts that the model of `pid` agrees with /proc/PID/maps. The
    /// process is stopped, so its maps cannot change; the daemon may still
    /// be a poll interval behind on its last events, so a disagreement is
    /// retried for up to two seconds before it fails the test.
    pub fn assert_verified(&self, pid: u32, at: &str) {
        match self.verify_until(pid, Instant::now() + Duration::from_secs(2)) {
            Ok(1) => {}
            Ok(attempts) => {
                eprintln!("note: verify of pid {pid} at {at} passed on attempt {attempts}");
            }
            Err((attempts, report)) => self.verify_failed(
                pid,
                &format!("at checkpoint `{at}` ({attempts} attempts)"),
                &report,
            ),
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
