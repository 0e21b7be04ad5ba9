//! What the benchmarks share: children that are always cleaned up,
//! waiting for a child's "ready" line, starting the release daemon and
//! reading its /metrics. What the integration tests need too is in
//! memmon-testkit.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use memmon_testkit::{
    DAEMON_READY_LINE, LineCollector, daemon_command, metrics_url, tracked_processes, wait_timeout,
};
pub use memmon_testkit::{TempDir, metric, state_of};

/// Children killed (SIGTERM, then SIGKILL) and reaped on drop.
#[derive(Default)]
pub struct Reaper {
    children: Vec<Child>,
}

/// SIGTERM (or `signal`) to `pids` with one `kill`: xtask has no libc.
fn signal(name: &str, pids: impl IntoIterator<Item = u32>) {
    let pids: Vec<String> = pids.into_iter().map(|p| p.to_string()).collect();
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(&pids)
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `deadline` for `child` to exit, then kills and reaps it.
fn reap(child: &mut Child, deadline: Instant) {
    wait_timeout(child, deadline.saturating_duration_since(Instant::now()));
    let _ = child.kill();
    let _ = child.wait();
}

/// How many idle processes both benchmarks add to the machine.
pub const IDLE_PROCESSES: usize = 1_000;

impl Reaper {
    /// Starts `IDLE_PROCESSES` idle `sleep`s, killed with the reaper.
    pub fn spawn_idle_processes(&mut self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        for i in 0..IDLE_PROCESSES {
            let child = std::process::Command::new("sleep")
                .arg("600")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .with_context(|| format!("spawning idle process {i}"))?;
            self.add(child);
        }
        Ok(())
    }

    /// Starts `bpftrace -e script`, its output going to `out`; its pid.
    pub fn spawn_bpftrace(&mut self, script: &str, out: &Path) -> Result<u32> {
        let file = std::fs::File::create(out)?;
        let child = Command::new("bpftrace")
            .arg("-e")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting bpftrace")?;
        Ok(self.add(child).id())
    }

    pub fn add(&mut self, child: Child) -> &mut Child {
        self.children.push(child);
        self.children.last_mut().unwrap()
    }

    /// Stops one child now (`sig`, then SIGKILL after 10 s) and forgets it.
    pub fn stop(&mut self, pid: u32, sig: &str) {
        let Some(at) = self.children.iter().position(|c| c.id() == pid) else {
            return;
        };
        let mut child = self.children.swap_remove(at);
        signal(sig, [pid]);
        reap(&mut child, Instant::now() + Duration::from_secs(10));
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // The daemon gets a SIGTERM first, to detach and remove its socket.
        signal("TERM", self.children.iter().map(Child::id));
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in &mut self.children {
            reap(child, deadline);
        }
    }
}

/// The first line of `pipe` that holds `needle`, within `timeout`; the
/// pipe is drained on a thread afterwards so the writer never blocks.
pub fn wait_for_line(
    pipe: impl Read + Send + 'static,
    needle: &str,
    timeout: Duration,
) -> Result<String> {
    LineCollector::new(pipe)
        .wait_for_line(needle, timeout)
        .map_err(anyhow::Error::msg)
}

/// The body of one GET of the daemon's /metrics `url`.
pub fn scrape(url: &str) -> Result<String> {
    Ok(memmon_testkit::http_get(url, Duration::from_secs(10))?)
}

/// A release daemon started by [`start_daemon`].
pub struct Daemon {
    pub pid: u32,
    /// The `memmon: daemon ready: ...` line.
    pub ready: String,
    /// From spawning it to its ready line.
    pub startup: Duration,
}

impl Daemon {
    /// `http://127.0.0.1:PORT/metrics`, from the ready line.
    pub fn metrics_url(&self) -> Result<String> {
        metrics_url(&self.ready)
            .map(str::to_owned)
            .context("the ready line names no metrics URL")
    }

    /// The number in `N processes tracked` of the ready line.
    pub fn tracked(&self) -> Option<u64> {
        tracked_processes(&self.ready)
    }
}

/// Starts `memmon daemon` on `socket` with /metrics on an ephemeral port
/// and waits (at most `timeout`) until it says it is ready, which is once
/// every process's initial snapshot is in.
pub fn start_daemon(
    reaper: &mut Reaper,
    memmon: &Path,
    socket: &Path,
    timeout: Duration,
) -> Result<Daemon> {
    start_daemon_with(reaper, memmon, socket, &[], timeout)
}

/// [`start_daemon`] with more daemon flags (`args`).
pub fn start_daemon_with(
    reaper: &mut Reaper,
    memmon: &Path,
    socket: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<Daemon> {
    let started = Instant::now();
    let daemon = reaper.add(
        daemon_command(memmon, socket)
            .args(args)
            .spawn()
            .context("starting the release daemon")?,
    );
    let pid = daemon.id();
    let stderr = daemon.stderr.take().unwrap();
    let ready = wait_for_line(stderr, DAEMON_READY_LINE, timeout)?;
    Ok(Daemon {
        pid,
        ready,
        startup: started.elapsed(),
    })
}
