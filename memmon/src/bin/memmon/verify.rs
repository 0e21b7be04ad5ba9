//! `memmon verify`: compare the daemon's model with /proc/PID/maps.

use std::{path::PathBuf, process::ExitCode};

use anyhow::bail;
use clap::Args;

use memmon::{
    client::{Client, ClientError, DEFAULT_SOCKET},
    escape::escape,
    protocol::{ErrorKind, Reply, Request, VerifyReport},
};

/// Check that the daemon's model of a process agrees with the kernel.
///
/// Agreement means: for every address, mapped or not, the permissions, the
/// pathname exactly as /proc prints it, and the file offset. Splits and
/// merges of equal neighbours don't count; nor does the lower end of
/// [stack], which grows on page faults. Exit status 0 only when all agree.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The process to check.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pid: Option<u32>,
    /// Check every process visible to you.
    #[arg(long)]
    all: bool,
    /// Print the reports as JSON, one object per line.
    #[arg(long)]
    json: bool,
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn verify_one(client: &mut Client, pid: u32) -> Result<VerifyReport, ClientError> {
    match client.request(Request::Verify { pid })? {
        Reply::Verify(report) => Ok(report),
        other => Err(ClientError::Daemon(memmon::protocol::ErrorReply {
            kind: ErrorKind::Internal,
            message: format!("unexpected reply {other:?}"),
        })),
    }
}

fn print(report: &VerifyReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else if report.agree {
        println!(
            "pid {} ({}): model agrees with /proc/{}/maps ({} model regions, {} kernel lines)",
            report.pid,
            escape(&report.comm),
            report.pid,
            report.model_regions,
            report.kernel_regions
        );
    } else {
        println!(
            "pid {} ({}): {} differences",
            report.pid,
            escape(&report.comm),
            report.differences.len()
        );
        for diff in &report.differences {
            println!("  {}", escape(&diff.to_string()));
        }
    }
    Ok(())
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.socket)?;
    let Some(pid) = args.pid else {
        return verify_all(&mut client, args.json);
    };
    let report = verify_one(&mut client, pid)?;
    print(&report, args.json)?;
    Ok(if report.agree {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify_all(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let (mut agree, mut differ, mut skipped) = (0, 0, 0);
    for pid in memmon::seed::list_pids()? {
        match verify_one(client, pid) {
            Ok(report) => {
                if report.agree {
                    agree += 1;
                } else {
                    differ += 1;
                }
                if !report.agree || json {
                    print(&report, json)?;
                }
            }
            // Gone meanwhile, someone else's, or too busy to hold still.
            Err(e)
                if matches!(
                    e.kind(),
                    Some(ErrorKind::NoSuchPid | ErrorKind::PermissionDenied | ErrorKind::NotReady)
                ) =>
            {
                skipped += 1
            }
            Err(e) => bail!(e),
        }
    }
    eprintln!("{agree} agree, {differ} differ, {skipped} skipped (exited, not yours, or busy)");
    Ok(if differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
