//! `memmon daemon`: keeps the live model of every process.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Args;

use crate::bpf::{DEFAULT_RINGBUF_SIZE, LoadOptions, Probes};

/// Run the monitoring daemon (needs root or CAP_BPF+CAP_PERFMON).
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket for queries.
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = "/run/memmon/memmon.sock")]
    socket: PathBuf,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// Ring buffer size in bytes (a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RINGBUF_SIZE)]
    ringbuf_size: u64,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let mut probes = Probes::load(&LoadOptions { ringbuf_size: args.ringbuf_size })?;
    let rt = super::runtime()?;
    // The ring buffer registers with the runtime's reactor.
    let _entered = rt.enter();
    let mut stream = probes.event_stream()?;
    eprintln!("memmon: daemon running ({} tracepoints attached)", probes.attached.len());
    let mut events: u64 = 0;
    rt.block_on(async {
        let shutdown = super::shutdown_signal();
        tokio::pin!(shutdown);
        let mut batch = Vec::with_capacity(4096);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                read = stream.next_batch(&mut batch, 4096) => { read?; }
            }
            events += batch.len() as u64;
            batch.clear();
        }
        anyhow::Ok(())
    })?;
    eprintln!("memmon: daemon stopped after {events} events ({} lost)", probes.lost_events());
    Ok(ExitCode::SUCCESS)
}
