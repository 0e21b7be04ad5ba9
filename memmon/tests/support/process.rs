//! Children of a test: signals, dying with the test, running to the end.

use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

pub use memmon_testkit::{LineCollector, wait_timeout};

pub fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Sends SIGTERM to the child if the test thread that spawned it dies.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; no allocation in the closure.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
}

/// Runs a program to completion, stdout captured, with a timeout.
pub fn run_to_end(
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> (ExitStatus, Vec<String>, u32) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let pid = child.id();
    let out = LineCollector::new(child.stdout.take().expect("piped stdout"));
    let status = wait_timeout(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{} did not finish within {timeout:?}", program.display());
    });
    (status, out.finish(), pid)
}

/// A finished command's stdout then stderr, as text (for messages).
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
