//! `memmon trace`: a live, system-wide, strace-like stream of memory events.

use std::{
    io::{BufWriter, Write},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Args;

use memmon::{
    bpf::{DEFAULT_RINGBUF_SIZE, LoadOptions, Probes},
    escape::escape,
};

/// Stream memory syscalls, exec, fork and exit events, one per line.
///
/// Runs standalone: it loads its own copy of the kernel programs, so it
/// works with or without a running daemon (both can run at once). Stop it
/// with Ctrl-C; it then prints how many events it saw and how many the
/// kernel dropped, on stderr.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Only this process (thread group id).
    #[arg(long)]
    pid: Option<u32>,
    /// Only tasks whose comm is exactly this (comm is cut at 15 bytes).
    #[arg(long)]
    comm: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Ring buffer size in bytes (a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RINGBUF_SIZE)]
    ringbuf_size: u64,
    /// Capture each memory syscall's user stack too: events show its id
    /// (`stack=`, JSON `stack_id`) and its frames, innermost first
    /// (`stack:` under the line, JSON `stack`).
    #[arg(long)]
    stacks: bool,
}

pub fn run(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let mut probes = Probes::load(&LoadOptions {
        ringbuf_size: args.ringbuf_size,
        stacks: args.stacks,
        ..LoadOptions::default()
    })?;
    let rt = super::runtime()?;
    // The ring buffer registers with the runtime's reactor.
    let _entered = rt.enter();
    let mut stream = probes.event_stream()?;
    let stacks = probes.stack_table()?;
    if let Some(log) = probes.kernel_log() {
        rt.spawn(log.forward());
    }
    // Tests and scripts wait for this line before starting their workload.
    eprintln!(
        "memmon: tracing ({} tracepoints attached); Ctrl-C to stop",
        probes.attached.len()
    );
    // The kernel keeps a comm's first 15 bytes, even mid-character: compare
    // bytes, as it stores them.
    let comm = args
        .comm
        .as_deref()
        .map(|c| &c.as_bytes()[..c.len().min(15)]);
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut seen: u64 = 0;
    let mut reported_lost = 0;
    let outcome: anyhow::Result<()> = rt.block_on(async {
        let shutdown = super::shutdown_signal();
        tokio::pin!(shutdown);
        let mut batch = Vec::with_capacity(4096);
        let mut stopping = false;
        while !stopping {
            tokio::select! {
                // Print what the kernel queued before the signal, then stop.
                _ = &mut shutdown => {
                    stopping = true;
                    stream.drain_ready(&mut batch, 1 << 20);
                }
                read = stream.next_batch(&mut batch, 4096) => {
                    read?;
                }
            }
            for event in batch.drain(..) {
                seen += 1;
                if args.pid.is_some_and(|p| p != event.meta.pid) || comm.is_some_and(|c| c != event.meta.comm.as_bytes()) {
                    continue;
                }
                // A stack costs a map lookup: only asked for with --stacks.
                let frames = event.meta.stack_id.and_then(|id| stacks.frames(id));
                if args.json {
                    match frames {
                        Some(frames) => {
                            let mut json = event.to_json();
                            json["stack"] = frames.iter().map(|ip| format!("{ip:#x}")).collect();
                            serde_json::to_writer(&mut out, &json)?;
                        }
                        None => event.write_json(&mut out)?,
                    }
                    out.write_all(b"\n")?;
                } else {
                    writeln!(out, "{}", escape(&event.to_line()))?;
                    if let Some(frames) = frames {
                        let shown: Vec<String> = frames.iter().map(|ip| format!("{ip:#x}")).collect();
                        writeln!(out, "    stack: {}", shown.join(" "))?;
                    }
                }
            }
            out.flush().context("writing events")?;
            let lost = probes.lost_events();
            if lost != reported_lost {
                eprintln!("memmon: {} events lost so far: the ring buffer was full (try a larger --ringbuf-size)", lost);
                reported_lost = lost;
            }
        }
        Ok(())
    });
    // A closed pipe (`memmon trace | head`) is a normal way to stop.
    if let Err(err) = &outcome
        && err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return Ok(ExitCode::SUCCESS);
    }
    outcome?;
    let _ = out.flush();
    eprintln!(
        "memmon: {seen} events, {} lost, {} undecodable",
        probes.lost_events(),
        stream.decode_errors
    );
    Ok(ExitCode::SUCCESS)
}
