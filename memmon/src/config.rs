//! The daemon's configuration file (TOML). Every field is optional; the
//! defaults are the constants below (and those they re-export), which
//! `Config::default`, `DaemonConfig::default` and `memmon daemon --help`
//! all read; deploy/memmon.toml states them too, and a test holds it to
//! them. Command-line flags override the file.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use thiserror::Error;

pub use crate::{bpf::DEFAULT_RINGBUF_SIZE, client::DEFAULT_SOCKET, tracker::DEFAULT_HISTORY_LEN};

/// Loopback only: the exposition is for a local scraper unless opened up.
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
pub const DEFAULT_TOP_GROUPS: usize = 50;
/// No per-pid series unless asked for.
pub const DEFAULT_PER_PID_TOP_K: usize = 0;
pub const DEFAULT_VERIFY_INTERVAL_SECS: u64 = 30;
pub const DEFAULT_VERIFY_BATCH: usize = 16;
/// The call site (one user stack word) is read at every memory syscall:
/// `cargo xtask bench` measures what it adds (README, "Overhead").
pub const DEFAULT_CALL_SITES: bool = true;
/// Full user stacks cost a stack walk per memory syscall: opt-in.
pub const DEFAULT_STACKS: bool = false;

/// How processes are grouped in metrics (never by pid unless opted in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// The systemd unit from the process's cgroup, else its comm.
    #[default]
    Unit,
    /// The process's comm.
    Comm,
    /// The full cgroup path.
    Cgroup,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Query socket.
    pub socket: PathBuf,
    /// Group allowed to connect to the socket. Default: none (root only).
    pub socket_group: Option<String>,
    /// Prometheus endpoint.
    pub metrics_addr: SocketAddr,
    /// Ring buffer bytes, a power of two.
    pub ringbuf_size: u64,
    /// Recent events kept per process.
    pub history_len: usize,
    /// Metric grouping: "unit", "comm" or "cgroup".
    pub grouping: Grouping,
    /// Groups exported by name (largest mapped bytes first); the rest are
    /// summed into group="other".
    pub top_groups: usize,
    /// Per-pid series for the K largest processes; 0 disables them.
    pub per_pid_top_k: usize,
    /// Seconds between verification rounds; 0 disables.
    pub verify_interval_secs: u64,
    /// Processes compared with /proc per round.
    pub verify_batch: usize,
    /// Read ELF headers of files on FUSE and network filesystems, whose
    /// server can stall a read (their regions are otherwise marked "not read").
    pub read_elf_on_network_fs: bool,
    /// Read each memory syscall's call site (the return address into the
    /// caller of the libc wrapper).
    pub call_sites: bool,
    /// Capture each memory syscall's full user stack (by frame pointers).
    pub stacks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: DEFAULT_SOCKET.into(),
            socket_group: None,
            metrics_addr: DEFAULT_METRICS_ADDR,
            ringbuf_size: DEFAULT_RINGBUF_SIZE,
            history_len: DEFAULT_HISTORY_LEN,
            grouping: Grouping::default(),
            top_groups: DEFAULT_TOP_GROUPS,
            per_pid_top_k: DEFAULT_PER_PID_TOP_K,
            verify_interval_secs: DEFAULT_VERIFY_INTERVAL_SECS,
            verify_batch: DEFAULT_VERIFY_BATCH,
            read_elf_on_network_fs: false,
            call_sites: DEFAULT_CALL_SITES,
            stacks: DEFAULT_STACKS,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// toml's message names the field and shows the line.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: describe(&e, text),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text, &name)
    }
}

/// `line N: message` on one line (toml's own text spans several).
fn describe(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim().to_owned();
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::parse("", "x").unwrap(), Config::default());
    }

    #[test]
    fn fields_override_defaults() {
        let c = Config::parse(
            "grouping = \"comm\"\ntop_groups = 5\nmetrics_addr = \"127.0.0.1:9999\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.grouping, Grouping::Comm);
        assert_eq!(c.top_groups, 5);
        assert_eq!(c.metrics_addr.port(), 9999);
        assert_eq!(c.history_len, 256);
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let err = Config::parse(
            "history_len = 10\n\nringbuf_size = \"big\"\n",
            "/etc/memmon.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("/etc/memmon.toml: line 3:"), "{err}");
        let err = Config::parse("histroy_len = 10\n", "f")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("histroy_len"),
            "{err}"
        );
        let err = Config::parse("grouping = \"pid\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("pid"), "{err}");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The shipped example must parse and state exactly the defaults.
    #[test]
    fn deploy_example_states_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/memmon.toml");
        assert_eq!(Config::load(Path::new(path)).unwrap(), Config::default());
    }
}
