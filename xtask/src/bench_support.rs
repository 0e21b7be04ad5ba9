//! What the benchmarks share: children that are always cleaned up, a
//! scratch directory, waiting for a child's "ready" line, starting the
//! release daemon and reading its /metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

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
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        thread::sleep(Duration::from_millis(20));
    }
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

/// A temporary directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("memmon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).context("creating the scratch directory")?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T`, `Z`, ...).
pub fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The first line of `pipe` that holds `needle`, within `timeout`; the
/// pipe is drained on a thread afterwards so the writer never blocks.
pub fn wait_for_line(
    pipe: impl Read + Send + 'static,
    needle: &'static str,
    timeout: Duration,
) -> Result<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut seen = Vec::new();
        let mut found = false;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if !found && line.contains(needle) {
                found = true;
                let _ = tx.send(Ok(line));
            } else if !found {
                seen.push(line);
            }
        }
        if !found {
            let _ = tx.send(Err(seen.join(" | ")));
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(seen)) => bail!("no `{needle}` before the output ended: {seen}"),
        Err(_) => bail!("no `{needle}` within {timeout:?}"),
    }
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
        self.ready
            .split("metrics on ")
            .nth(1)
            .map(|u| u.trim().to_owned())
            .context("the ready line names no metrics URL")
    }

    /// The number in `N processes tracked` of the ready line.
    pub fn tracked(&self) -> Option<u64> {
        let (_, rest) = self.ready.split_once("daemon ready: ")?;
        rest.split_whitespace().next()?.parse().ok()
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
    let started = Instant::now();
    let daemon = reaper.add(
        Command::new(memmon)
            .arg("daemon")
            .arg("--socket")
            .arg(socket)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env_remove("MEMMON_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the release daemon")?,
    );
    let pid = daemon.id();
    let stderr = daemon.stderr.take().unwrap();
    let ready = wait_for_line(stderr, "memmon: daemon ready", timeout)?;
    Ok(Daemon {
        pid,
        ready,
        startup: started.elapsed(),
    })
}

/// The body of one HTTP/1.0 GET of `url` (http://HOST:PORT/PATH).
pub fn http_get(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream =
        std::net::TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading {url}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: no end of the HTTP header"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{url} answered {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_owned())
}

/// The value of the unlabelled sample `name` in a Prometheus exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::{Daemon, metric};
    use std::time::Duration;

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# TYPE memmon_events_total counter\n\
                    memmon_events_total 1234\n\
                    memmon_events_lost_total 0\n\
                    memmon_syscalls_total{syscall=\"mmap\",group=\"x\"} 7\n\
                    process_resident_memory_bytes 2.5e+07\n";
        assert_eq!(metric(text, "memmon_events_total"), Some(1234.0));
        assert_eq!(metric(text, "memmon_events_lost_total"), Some(0.0));
        assert_eq!(metric(text, "process_resident_memory_bytes"), Some(2.5e7));
        assert_eq!(metric(text, "memmon_syscalls_total"), None);
        assert_eq!(metric(text, "memmon_events"), None);
    }

    #[test]
    fn the_ready_line_is_read() {
        let d = Daemon {
            pid: 1,
            ready: "memmon: daemon ready: 1070 processes tracked, serving /tmp/s, \
                    metrics on http://127.0.0.1:4242/metrics"
                .into(),
            startup: Duration::ZERO,
        };
        assert_eq!(d.tracked(), Some(1070));
        assert_eq!(d.metrics_url().unwrap(), "http://127.0.0.1:4242/metrics");
    }
}
