//! `memmon query <pid>`: a process's layout, readable or as JSON.

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::bail;
use clap::Args;

use memmon::{
    client::{Client, DEFAULT_SOCKET},
    protocol::{Render, Reply, Request},
    report::Layout,
};

use crate::{render::render_text, rss::render_rss};

/// The layout's text, with the smaps and origins tables when asked for.
fn text(layout: &Layout, color: bool, origins: bool) -> String {
    let mut text = render_text(layout, color);
    if layout.rss_totals.is_some() {
        text.push_str(&render_rss(layout));
    }
    if origins {
        text.push_str(&crate::origins::render_origins(layout, color));
    }
    text
}

/// What a query asks for besides the layout.
#[derive(Clone, Copy, Default)]
pub(crate) struct Extras {
    pub events: usize,
    pub rss: bool,
    pub origins: bool,
}

/// Show a process's memory layout: every region with its size, permissions
/// and what it is (text, data, bss, heap, mmap'd chunk, arena, thread stack,
/// guard page, ...), the gaps between them, the ELF view, the ASLR verdict
/// and W^X findings. Asks the running daemon.
#[derive(Debug, Args)]
pub struct QueryArgs {
    pid: u32,
    /// One JSON object (schema in the README).
    #[arg(long)]
    json: bool,
    /// Also show the last N memory events (default 20 when given without N).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20")]
    events: Option<usize>,
    /// Also show Rss, Pss, Swap, dirty and locked bytes per region and by
    /// kind, as `pmap -X` does: read from /proc/PID/smaps at this moment
    /// (slow for processes with very many regions, so only on request).
    #[arg(long)]
    rss: bool,
    /// Also show each region's origin: the syscall, thread, age and call
    /// site that made it (`seed` when it predates memmon's view of the
    /// process), and the last mprotect or mremap that changed it.
    #[arg(long)]
    origins: bool,
    /// Redraw whenever the layout changes (Ctrl-C to stop).
    #[arg(long, conflicts_with = "json")]
    watch: bool,
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

pub(crate) fn fetch(
    client: &mut Client,
    pid: u32,
    Extras {
        events,
        rss,
        origins,
    }: Extras,
) -> anyhow::Result<Layout> {
    match client.request(Request::Query {
        pid,
        events,
        rss,
        origins,
        render: None,
    })? {
        Reply::Layout(layout) => Ok(*layout),
        other => bail!("unexpected reply from the daemon: {other:?}"),
    }
}

/// Prints the layout as the daemon rendered it: the same bytes as
/// rendering it here, without decoding it first (see [`Render`]).
fn print_rendered(
    client: &mut Client,
    pid: u32,
    events: usize,
    render: Render,
) -> anyhow::Result<ExitCode> {
    let reply = client.request(Request::Query {
        pid,
        events,
        rss: false,
        origins: false,
        render: Some(render),
    })?;
    let mut out = std::io::stdout().lock();
    match reply {
        Reply::Rendered { bytes, .. } => out.write_all(&bytes)?,
        // A daemon from before rendering answers the layout itself.
        Reply::Layout(layout) if render == Render::Json => {
            let mut out = std::io::BufWriter::new(out);
            serde_json::to_writer_pretty(&mut out, &layout)?;
            writeln!(out)?;
            out.flush()?;
        }
        Reply::Layout(layout) => {
            out.write_all(render_text(&layout, render == Render::TextColor).as_bytes())?
        }
        other => bail!("unexpected reply from the daemon: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.socket)?;
    let extras = Extras {
        events: args.events.unwrap_or(0),
        rss: args.rss,
        origins: args.origins,
    };
    let color = std::io::stdout().is_terminal();
    if !args.watch && !args.rss && !args.origins {
        let render = match (args.json, color) {
            (true, _) => Render::Json,
            (false, true) => Render::TextColor,
            (false, false) => Render::Text,
        };
        return print_rendered(&mut client, args.pid, extras.events, render);
    }
    if args.json {
        let layout = fetch(&mut client, args.pid, extras)?;
        // Buffered: a large layout is megabytes, and stdout is line buffered.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &layout)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.watch {
        let text = text(&fetch(&mut client, args.pid, extras)?, color, args.origins);
        std::io::stdout().lock().write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut shown = String::new();
    loop {
        let text = match fetch(&mut client, args.pid, extras) {
            Ok(layout) => text(&layout, color, args.origins),
            // The process exited: say so and stop, like `watch -e`.
            Err(err) if !shown.is_empty() => {
                println!("memmon: {err}");
                return Ok(ExitCode::SUCCESS);
            }
            Err(err) => return Err(err),
        };
        if text != shown {
            if color {
                print!("\x1b[2J\x1b[H");
            }
            print!("{text}");
            shown = text;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
