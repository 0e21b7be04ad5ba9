//! Starting `memmon daemon` for a test or a benchmark, and its ready line.

use std::path::Path;
use std::process::{Command, Stdio};

/// The line the daemon prints once it is seeded and serving queries:
/// `memmon: daemon ready: N processes tracked, serving SOCKET, metrics on URL`.
pub const DAEMON_READY_LINE: &str = "memmon: daemon ready";

/// `memmon daemon` on `socket`, with /metrics on an ephemeral loopback
/// port; stdout to /dev/null, stderr piped for [`DAEMON_READY_LINE`].
pub fn daemon_command(memmon: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new(memmon);
    cmd.arg("daemon")
        .arg("--socket")
        .arg(socket)
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env_remove("MEMMON_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// `http://127.0.0.1:PORT/metrics`, from the ready line.
pub fn metrics_url(ready: &str) -> Option<&str> {
    ready.split("metrics on ").nth(1).map(str::trim)
}

/// The number in `N processes tracked` of the ready line.
pub fn tracked_processes(ready: &str) -> Option<u64> {
    let (_, rest) = ready.split_once("daemon ready: ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_is_read() {
        let ready = "memmon: daemon ready: 1070 processes tracked, serving /tmp/s, \
                     metrics on http://127.0.0.1:4242/metrics";
        assert!(ready.starts_with(DAEMON_READY_LINE));
        assert_eq!(tracked_processes(ready), Some(1070));
        assert_eq!(metrics_url(ready), Some("http://127.0.0.1:4242/metrics"));
        assert_eq!(
            metrics_url("memmon: daemon ready: 3 processes tracked"),
            None
        );
    }
}
