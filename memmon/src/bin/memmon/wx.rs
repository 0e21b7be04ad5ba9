//! `memmon wx`: processes holding writable+executable or executable
//! anonymous memory; with `--events`, the transitions that made it.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use crate::{
    ps::{ListArgs, fetch, print},
    render::human_size,
    table::{Columns, Style},
};
use memmon::{
    client::Client,
    escape::escape,
    protocol::{Reply, Request},
    rules::wx_events::WxEventView,
    users,
};

/// List processes that break W^X: memory both writable and executable, or
/// executable memory backed by no file (JIT code, shellcode). `memmon
/// query PID` shows the regions themselves.
///
/// With --events, list the transitions instead, oldest first: memory made
/// writable+executable (created_wx), writable memory made executable
/// (w_to_x, the JIT pattern), executable memory made writable (x_to_w),
/// and executable memory with no file behind it (anon_exec), each with the
/// syscall, thread and call site that did it.
#[derive(Debug, Args)]
pub struct WxArgs {
    /// List W^X transitions (recent ones, per process) instead of processes.
    #[arg(long)]
    events: bool,
    /// Only this process's transitions (with --events).
    #[arg(value_name = "PID", requires = "events")]
    pid: Option<u32>,
    #[command(flatten)]
    list: ListArgs,
}

pub fn run(args: WxArgs) -> anyhow::Result<ExitCode> {
    if args.events {
        return events(&args);
    }
    let mut processes = fetch(&args.list)?;
    processes.retain(|p| p.wx_count > 0);
    processes.sort_by_key(|p| (std::cmp::Reverse(p.wx_count), p.pid));
    print(&processes, args.list.json, &["W^X", "MAPPED"], |p| {
        vec![p.wx_count.to_string(), human_size(p.mapped_bytes)]
    })?;
    Ok(ExitCode::SUCCESS)
}

/// An event as `--json` prints it: as the daemon sent it, with its age.
#[derive(Serialize)]
struct Aged<'a> {
    #[serde(flatten)]
    event: &'a WxEventView,
    age_ns: u64,
}

fn events(args: &WxArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.list.socket)?;
    let Reply::WxEvents { now_ns, mut events } =
        client.request(Request::WxEvents { pid: args.pid })?
    else {
        bail!("unexpected reply from the daemon");
    };
    let uid = match &args.list.user {
        Some(name) => Some(
            users::user_id(name).ok_or_else(|| anyhow::anyhow!("--user {name}: no such user"))?,
        ),
        None => None,
    };
    events.retain(|e| {
        args.list.comm.as_ref().is_none_or(|c| &e.comm == c) && uid.is_none_or(|u| e.uid == Some(u))
    });
    let age = |e: &WxEventView| now_ns.saturating_sub(e.ts_ns);
    if args.list.json {
        let aged: Vec<Aged> = events
            .iter()
            .map(|event| Aged {
                event,
                age_ns: age(event),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&aged)?);
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "AGE",
        "PID",
        "TID",
        "COMM",
        "TRANSITION",
        "RANGE",
        "SIZE",
        "PERMS",
        "SYSCALL",
        "CALL SITE",
    ];
    let mut table = Columns::new(&header, false);
    for e in &events {
        let perms = format!("{}→{}", e.old.as_deref().unwrap_or("new"), e.new);
        let call_site = e.call_site.as_ref().map_or("-".into(), |c| c.short());
        let cells = [
            format_age(age(e)),
            e.pid.to_string(),
            e.tid.to_string(),
            e.comm.clone(),
            e.kind_label().to_owned(),
            format!("{:x}-{:x}", e.range().0, e.range().1),
            human_size(e.bytes),
            perms,
            e.syscall.clone(),
            call_site,
        ];
        for cell in cells {
            table.cell(Style::Plain, format_args!("{}", escape(&cell)));
        }
        table.end_row();
    }
    let mut out = String::new();
    table.render(&mut out);
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `3.2s`, `5m10s`, `2h03m`: short, for a column.
fn format_age(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..60 => format!("{:.1}s", ns as f64 / 1e9),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::format_age;

    #[test]
    fn ages_are_short() {
        assert_eq!(format_age(3_200_000_000), "3.2s");
        assert_eq!(format_age(310 * 1_000_000_000), "5m10s");
        assert_eq!(format_age(7380 * 1_000_000_000), "2h03m");
    }
}
