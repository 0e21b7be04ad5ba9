//! `memmon wx`: processes holding writable+executable or executable
//! anonymous memory.

use std::process::ExitCode;

use clap::Args;

use crate::{
    ps::{ListArgs, fetch, print},
    render::human_size,
};

/// List processes that break W^X: memory both writable and executable, or
/// executable memory backed by no file (JIT code, shellcode). `memmon
/// query PID` shows the regions themselves.
#[derive(Debug, Args)]
pub struct WxArgs {
    #[command(flatten)]
    list: ListArgs,
}

pub fn run(args: WxArgs) -> anyhow::Result<ExitCode> {
    let mut processes = fetch(&args.list)?;
    processes.retain(|p| p.wx_count > 0);
    processes.sort_by_key(|p| (std::cmp::Reverse(p.wx_count), p.pid));
    print(&processes, args.list.json, &["W^X", "MAPPED"], |p| {
        vec![p.wx_count.to_string(), human_size(p.mapped_bytes)]
    })?;
    Ok(ExitCode::SUCCESS)
}
