//! `memmon origins PID` and `memmon leaks`: mapped memory by the call
//! site that made it, and the call sites whose memory keeps growing.

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;
use clap::Args;

use memmon::{
    client::{Client, DEFAULT_SOCKET},
    escape::escape,
    protocol::{Reply, Request},
    report::origins::{CallSiteView, OriginView, SiteView},
};

use crate::{
    render::human_size,
    table::{Columns, Style},
};

/// Show where a process's mapped memory came from: outstanding bytes and
/// regions by the call site (return address into the caller of the libc
/// wrapper) that made them, largest first, with the growth over a window.
/// Exact under partial munmaps, MAP_FIXED overlays, mremap moves and
/// splits: it follows the model, not pairs of calls.
#[derive(Debug, Args)]
pub struct OriginsArgs {
    pid: u32,
    /// How far back growth is measured (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// One JSON object.
    #[arg(long)]
    json: bool,
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

/// List the call sites, system-wide, whose mapped memory grew steadily
/// over the window: by at least --min-growth bytes, and in at least three
/// of its four quarters without shrinking in any. Memory that predates
/// memmon's view of a process is never listed.
#[derive(Debug, Args)]
pub struct LeaksArgs {
    /// Least growth over the window to be listed (e.g. 1MiB, 65536).
    #[arg(long, value_name = "BYTES", default_value = "1MiB")]
    min_growth: bytesize::ByteSize,
    /// The window, at least 4s (e.g. 30s, 5m); growth is sampled once a
    /// second and remembered for about two minutes of changes per call site.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    window: Duration,
    #[arg(long)]
    json: bool,
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `symbol (object)`, `object+0xoffset`, or `-`, escaped for a terminal.
pub(crate) fn site_text(site: Option<&CallSiteView>) -> String {
    site.map_or_else(|| "-".into(), |s| escape(&s.short()).into_owned())
}

fn signed_size(bytes: i64) -> String {
    let size = human_size(bytes.unsigned_abs());
    match bytes {
        b if b > 0 => format!("+{size}"),
        b if b < 0 => format!("-{size}"),
        _ => "0".into(),
    }
}

fn site_cells(table: &mut Columns, site: &SiteView) {
    table.cell(Style::Plain, format_args!("{}", human_size(site.bytes)));
    table.cell(Style::Plain, format_args!("{}", site.regions));
    let growth = signed_size(site.growth);
    let mark = if site.window_complete { "" } else { "?" };
    table.cell(Style::Plain, format_args!("{growth}{mark}"));
    table.cell(Style::Plain, format_args!("{}", site.syscall));
    table.cell(
        Style::Plain,
        format_args!("{}", site_text(site.call_site.as_ref())),
    );
}

pub fn run_origins(args: OriginsArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.socket)?;
    let report = match client.request(Request::Origins {
        pid: args.pid,
        window_ms: millis(args.window),
    })? {
        Reply::Origins(report) => report,
        other => bail!("unexpected reply from the daemon: {other:?}"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let color = std::io::stdout().is_terminal();
    let mut out = format!(
        "pid {} ({}): mapped memory by call site, growth over {}\n",
        report.pid,
        escape(&report.comm),
        humantime::format_duration(args.window)
    );
    let mut table = Columns::new(
        &["BYTES", "REGIONS", "GROWTH", "SYSCALL", "CALL SITE"],
        color,
    );
    for site in &report.sites {
        site_cells(&mut table, site);
        table.end_row();
    }
    table.render(&mut out);
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Growth is sampled once a second, and steadiness is judged by quarters.
const MIN_LEAK_WINDOW: Duration = Duration::from_secs(4);

pub fn run_leaks(args: LeaksArgs) -> anyhow::Result<ExitCode> {
    if args.window < MIN_LEAK_WINDOW {
        bail!(
            "--window {} is too short: growth is sampled once a second, so give at least 4s",
            humantime::format_duration(args.window)
        );
    }
    let mut client = Client::connect(&args.socket)?;
    let report = match client.request(Request::Leaks {
        window_ms: millis(args.window),
        min_growth: args.min_growth.as_u64(),
    })? {
        Reply::Leaks(report) => report,
        other => bail!("unexpected reply from the daemon: {other:?}"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.leaks.is_empty() {
        println!(
            "no call site grew steadily by {} or more over {}",
            human_size(args.min_growth.as_u64()),
            humantime::format_duration(args.window)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let color = std::io::stdout().is_terminal();
    let mut table = Columns::new(
        &[
            "PID",
            "COMM",
            "UNIT",
            "BYTES",
            "REGIONS",
            "GROWTH",
            "SYSCALL",
            "CALL SITE",
        ],
        color,
    );
    for leak in &report.leaks {
        table.cell(Style::Plain, format_args!("{}", leak.pid));
        table.cell(Style::Plain, format_args!("{}", escape(&leak.comm)));
        let unit = leak.unit.as_deref().unwrap_or("-");
        table.cell(Style::Plain, format_args!("{}", escape(unit)));
        site_cells(&mut table, &leak.site);
        table.end_row();
    }
    let mut out = String::new();
    table.render(&mut out);
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `mmap 12s ago by tid 41 from make_pool (app)`.
fn origin_text(origin: &OriginView) -> String {
    let age = humantime::format_duration(Duration::from_millis(origin.age_ms / 1000 * 1000));
    if origin.syscall == "seed" {
        return format!("already there when read from /proc {age} ago");
    }
    format!(
        "{} {age} ago by tid {} from {}",
        origin.syscall,
        origin.tid,
        site_text(origin.call_site.as_ref())
    )
}

/// The `query --origins` section: each region (or part) and its origin.
pub(crate) fn render_origins(layout: &memmon::report::Layout, color: bool) -> String {
    let mut out = String::from("\nOrigins:\n");
    let mut table = Columns::new(
        &[
            "START",
            "END",
            "PERMS",
            "PATH",
            "MADE BY",
            "LAST CHANGED BY",
        ],
        color,
    );
    for region in &layout.regions {
        let parts: Vec<(&str, &str, &OriginView, Option<&OriginView>)> =
            if region.origins.is_empty() {
                region
                    .origin
                    .iter()
                    .map(|o| {
                        (
                            region.start.as_str(),
                            region.end.as_str(),
                            o,
                            region.last_changed.as_ref(),
                        )
                    })
                    .collect()
            } else {
                region
                    .origins
                    .iter()
                    .map(|p| {
                        (
                            p.start.as_str(),
                            p.end.as_str(),
                            &p.origin,
                            p.last_changed.as_ref(),
                        )
                    })
                    .collect()
            };
        for (start, end, made, changed) in parts {
            table.cell(Style::Plain, format_args!("{start}"));
            table.cell(Style::Plain, format_args!("{end}"));
            table.cell(Style::Plain, format_args!("{}", region.perms));
            table.cell(Style::Plain, format_args!("{}", escape(&region.path)));
            table.cell(Style::Plain, format_args!("{}", origin_text(made)));
            let changed = changed.map_or_else(|| "-".into(), origin_text);
            table.cell(Style::Plain, format_args!("{changed}"));
            table.end_row();
        }
    }
    table.render(&mut out);
    out.push('\n');
    out
}
