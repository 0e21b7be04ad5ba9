//! `memmon aslr`: processes whose address space layout is not (fully)
//! randomized, and why.

use std::process::ExitCode;

use clap::Args;

use crate::{
    ps::{ListArgs, fetch, print},
    render::json_name,
};
use memmon::rules::AslrStatus;

/// List processes whose ASLR is off (randomize_va_space=0, setarch -R,
/// gdb), partial (non-PIE executable, randomize_va_space=1) or unknown
/// (randomize_va_space unreadable), with reasons.
#[derive(Debug, Args)]
pub struct AslrArgs {
    #[command(flatten)]
    list: ListArgs,
}

pub fn run(args: AslrArgs) -> anyhow::Result<ExitCode> {
    let mut processes = fetch(&args.list)?;
    processes.retain(|p| p.aslr.status != AslrStatus::Full);
    // Worst first.
    processes.sort_by(|a, b| b.aslr.status.cmp(&a.aslr.status).then(a.pid.cmp(&b.pid)));
    print(&processes, args.list.json, &["ASLR", "REASONS"], |p| {
        vec![json_name(&p.aslr.status), p.aslr.reasons.join("; ")]
    })?;
    Ok(ExitCode::SUCCESS)
}
