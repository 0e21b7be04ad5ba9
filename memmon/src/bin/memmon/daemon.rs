//! `memmon daemon`: keeps the live model of every process.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Args;

use memmon::{
    config::{Config, Grouping},
    daemon::{Daemon, DaemonConfig},
};

/// Run the monitoring daemon (needs root, or CAP_BPF + CAP_PERFMON +
/// CAP_SYS_PTRACE, and CAP_SYS_ADMIN when tracefs must be mounted).
///
/// It attaches the kernel programs, seeds a model of every process from
/// /proc, keeps each model current from the event stream and answers
/// `memmon query`, `ps`, `verify` and friends on a Unix socket. Flags
/// override the configuration file; both default as documented in
/// deploy/memmon.toml.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket for queries [default: /run/memmon/memmon.sock].
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET")]
    socket: Option<PathBuf>,
    /// Group whose members may connect to the socket (mode 0660); each of
    /// them sees only their own processes.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Address of the Prometheus /metrics endpoint [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Ring buffer size in bytes, a power of two [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    ringbuf_size: Option<u64>,
    /// Recent events kept per process [default: 256].
    #[arg(long, value_name = "N")]
    history: Option<usize>,
    /// Seconds between checks of a sample of models against /proc; 0: off [default: 30].
    #[arg(long, value_name = "SECS")]
    verify_interval: Option<u64>,
    /// How metrics group processes [default: unit].
    #[arg(long, value_enum)]
    grouping: Option<Grouping>,
}

/// The file's settings with the flags laid over them.
fn effective_config(args: &DaemonArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(v) = &args.socket {
        config.socket = v.clone();
    }
    if let Some(v) = &args.socket_group {
        config.socket_group = Some(v.clone());
    }
    if let Some(v) = args.metrics_addr {
        config.metrics_addr = v;
    }
    if let Some(v) = args.ringbuf_size {
        config.ringbuf_size = v;
    }
    if let Some(v) = args.history {
        config.history_len = v;
    }
    if let Some(v) = args.verify_interval {
        config.verify_interval_secs = v;
    }
    if let Some(v) = args.grouping {
        config.grouping = v;
    }
    Ok(config)
}

pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let config = effective_config(&args)?;
    let socket_group = match &config.socket_group {
        Some(name) => Some(
            memmon::users::group_id(name)
                .with_context(|| format!("socket_group {name}: no such group"))?,
        ),
        None => None,
    };
    let daemon_config = DaemonConfig {
        socket: config.socket.clone(),
        socket_group,
        metrics_addr: Some(config.metrics_addr),
        grouping: config.grouping,
        top_groups: config.top_groups,
        per_pid_top_k: config.per_pid_top_k,
        ringbuf_size: config.ringbuf_size,
        history_len: config.history_len,
        verify_interval: Duration::from_secs(config.verify_interval_secs),
        verify_batch: config.verify_batch,
        ..DaemonConfig::default()
    };
    let rt = super::runtime()?;
    let daemon = rt.block_on(Daemon::start(daemon_config))?;
    let socket = config.socket.display().to_string();
    let metrics = daemon
        .metrics_addr()
        .map(|a| format!(", metrics on http://{a}/metrics"))
        .unwrap_or_default();
    rt.block_on(daemon.run(super::shutdown_signal(), |tracker| {
        // Tests and scripts wait for this line.
        eprintln!(
            "memmon: daemon ready: {} processes tracked, serving {socket}{metrics}",
            tracker.len()
        );
    }))?;
    eprintln!("memmon: daemon stopped");
    Ok(ExitCode::SUCCESS)
}
