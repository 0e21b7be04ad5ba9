//! `memmon diff PID --since D`: what changed in a layout, and who did it.

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;
use clap::Args;

use memmon::{
    client::{Client, DEFAULT_SOCKET},
    escape::escape,
    protocol::{Reply, Request},
    report::diff::ChangeKind,
};

use crate::{
    origins::site_text,
    render::{human_size, json_name},
    table::{Columns, Style},
};

/// Show what changed in a process's layout over the last DURATION: regions
/// added, removed, moved, grown or shrunk, and protection changes, oldest
/// first, each with the syscall, thread and call site that did it. Built
/// from the process's recent events (see `daemon --history`).
#[derive(Debug, Args)]
pub struct DiffArgs {
    pid: u32,
    /// How far back (e.g. 2s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    since: Duration,
    #[arg(long)]
    json: bool,
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.socket)?;
    let report = match client.request(Request::Diff {
        pid: args.pid,
        since_ms: u64::try_from(args.since.as_millis()).unwrap_or(u64::MAX),
    })? {
        Reply::Diff(report) => report,
        other => bail!("unexpected reply from the daemon: {other:?}"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "pid {} ({}): {} change(s) in the last {}\n",
        report.pid,
        escape(&report.comm),
        report.changes.len(),
        humantime::format_duration(args.since)
    );
    if let Some(at) = report.truncated_at_s {
        out.push_str(&format!(
            "(history reaches back only {at:.1}s: older changes are not shown)\n"
        ));
    }
    let color = std::io::stdout().is_terminal();
    let mut table = Columns::new(
        &[
            "AGE",
            "CHANGE",
            "START",
            "END",
            "SIZE",
            "DETAIL",
            "SYSCALL",
            "TID",
            "CALL SITE",
        ],
        color,
    );
    for c in &report.changes {
        table.cell(
            Style::Plain,
            format_args!("{:.1}s", c.by.age_ms as f64 / 1000.0),
        );
        table.cell(Style::Plain, format_args!("{}", json_name(&c.kind)));
        table.cell(Style::Plain, format_args!("{}", c.start));
        table.cell(Style::Plain, format_args!("{}", c.end));
        let size = u64::from_str_radix(c.end.trim_start_matches("0x"), 16).unwrap_or(0)
            - u64::from_str_radix(c.start.trim_start_matches("0x"), 16).unwrap_or(0);
        table.cell(Style::Plain, format_args!("{}", human_size(size)));
        let detail = match c.kind {
            ChangeKind::Moved => format!(
                "from {} ({})",
                c.from.as_deref().unwrap_or("?"),
                human_size(c.old_size.unwrap_or(0))
            ),
            ChangeKind::Grown | ChangeKind::Shrunk => c
                .old_size
                .map_or_else(String::new, |s| format!("was {}", human_size(s))),
            _ => [c.perms.as_deref(), c.path.as_deref()]
                .into_iter()
                .flatten()
                .map(|s| escape(s).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        };
        table.cell(Style::Plain, format_args!("{detail}"));
        table.cell(Style::Plain, format_args!("{}", c.by.syscall));
        table.cell(Style::Plain, format_args!("{}", c.by.tid));
        table.cell(
            Style::Plain,
            format_args!("{}", site_text(c.by.call_site.as_ref())),
        );
        table.end_row();
    }
    table.render(&mut out);
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
