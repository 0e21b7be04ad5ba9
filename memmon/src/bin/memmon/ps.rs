//! `memmon ps`: every tracked process, one line each.

use std::{path::PathBuf, process::ExitCode};

use anyhow::bail;
use clap::{Args, ValueEnum};

use crate::table::{Columns, Style};

use memmon::{
    classify::RegionKind,
    client::{Client, DEFAULT_SOCKET},
    escape::escape,
    protocol::{Reply, Request},
    report::ProcessSummary,
    users,
};

use crate::render::{human_size, json_name};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SortKey {
    Pid,
    Comm,
    Vmas,
    Mapped,
    Wx,
}

/// Filters shared by `ps`, `aslr` and `wx`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only processes whose comm is exactly this.
    #[arg(long)]
    pub(crate) comm: Option<String>,
    /// Only processes of this user (name or uid).
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Also list kernel threads (processes with no address space), hidden
    /// by default.
    #[arg(long)]
    all: bool,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
}

/// List tracked processes with their VMA count, mapped bytes by kind,
/// ASLR status and W^X count (root sees all; others their own).
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Sort order (largest first for sizes and counts).
    #[arg(long, value_enum, default_value = "pid")]
    sort: SortKey,
    #[command(flatten)]
    list: ListArgs,
}

/// Asks the daemon and applies the filters.
pub(crate) fn fetch(args: &ListArgs) -> anyhow::Result<Vec<ProcessSummary>> {
    let mut client = Client::connect(&args.socket)?;
    Ok(fetch_listing(&mut client, args)?.0)
}

/// The filtered processes and vm.max_map_count, over `client`.
pub(crate) fn fetch_listing(
    client: &mut Client,
    args: &ListArgs,
) -> anyhow::Result<(Vec<ProcessSummary>, Option<u64>)> {
    let Reply::Processes {
        mut processes,
        max_map_count,
    } = client.request(Request::List)?
    else {
        bail!("unexpected reply from the daemon");
    };
    let uid = match &args.user {
        Some(name) => Some(
            users::user_id(name).ok_or_else(|| anyhow::anyhow!("--user {name}: no such user"))?,
        ),
        None => None,
    };
    processes.retain(|p| {
        (args.all || p.has_address_space())
            && args.comm.as_ref().is_none_or(|c| &p.comm == c)
            && uid.is_none_or(|u| p.uid == Some(u))
    });
    for p in &mut processes {
        p.user = p
            .uid
            .and_then(users::user_name)
            .or_else(|| p.uid.map(|u| u.to_string()));
    }
    Ok((processes, max_map_count))
}

pub(crate) fn bytes_of(p: &ProcessSummary, kinds: &[RegionKind]) -> u64 {
    kinds.iter().filter_map(|k| p.by_kind.get(k)).sum()
}

/// Prints `processes` as JSON or as a table with `columns` after the
/// common ones.
pub(crate) fn print(
    processes: &[ProcessSummary],
    json: bool,
    columns: &[&str],
    cells: impl Fn(&ProcessSummary) -> Vec<String>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(processes)?);
        return Ok(());
    }
    let mut header = vec!["PID", "USER", "COMM"];
    header.extend_from_slice(columns);
    let mut table = Columns::new(&header, false);
    for p in processes {
        table.cell(Style::Plain, format_args!("{}", p.pid));
        let user = p.user.as_deref().unwrap_or_default();
        table.cell(Style::Plain, format_args!("{}", escape(user)));
        table.cell(Style::Plain, format_args!("{}", escape(&p.comm)));
        for cell in cells(p) {
            table.cell(Style::Plain, format_args!("{}", escape(&cell)));
        }
        table.end_row();
    }
    let mut out = String::new();
    table.render(&mut out);
    println!("{out}");
    Ok(())
}

pub fn run(args: PsArgs) -> anyhow::Result<ExitCode> {
    use RegionKind as K;
    let mut processes = fetch(&args.list)?;
    match args.sort {
        SortKey::Pid => processes.sort_by_key(|p| p.pid),
        SortKey::Comm => processes.sort_by(|a, b| a.comm.cmp(&b.comm).then(a.pid.cmp(&b.pid))),
        SortKey::Vmas => processes.sort_by_key(|p| std::cmp::Reverse(p.vmas)),
        SortKey::Mapped => processes.sort_by_key(|p| std::cmp::Reverse(p.mapped_bytes)),
        SortKey::Wx => processes.sort_by_key(|p| std::cmp::Reverse(p.wx_count)),
    }
    let columns = [
        "VMAS", "MAPPED", "TEXT", "DATA", "HEAP", "MMAP", "ARENA", "STACKS", "FILES", "ASLR", "W^X",
    ];
    print(&processes, args.list.json, &columns, |p| {
        vec![
            p.vmas.to_string(),
            human_size(p.mapped_bytes),
            human_size(bytes_of(p, &[K::Text])),
            human_size(bytes_of(p, &[K::Rodata, K::Data, K::Bss])),
            human_size(bytes_of(p, &[K::Heap])),
            human_size(bytes_of(p, &[K::MmapChunk, K::Anon])),
            human_size(bytes_of(p, &[K::Arena])),
            human_size(bytes_of(p, &[K::Stack, K::ThreadStack, K::Guard])),
            human_size(bytes_of(p, &[K::File, K::Shm])),
            json_name(&p.aslr.status),
            p.wx_count.to_string(),
        ]
    })?;
    Ok(ExitCode::SUCCESS)
}
