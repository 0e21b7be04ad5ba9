//! `cargo xtask build` and `cargo xtask run`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::env::{as_root, cargo, describe, run as run_cmd, target_dir};
use crate::setup::setup;

/// Builds memmon; its build.rs builds the eBPF crate via aya-build.
pub fn build(release: bool) -> Result<PathBuf> {
    setup()?;
    let mut cmd = cargo()?;
    cmd.args(["build", "-p", "memmon"]);
    if release {
        cmd.arg("--release");
    }
    run_cmd(&mut cmd)?;
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("memmon");
    println!("{}", bin.display());
    Ok(bin)
}

/// Builds, then replaces this process with memmon (as root: loading BPF
/// programs needs it), so signals and the exit code are memmon's own.
pub fn run(release: bool, args: &[String]) -> Result<()> {
    let bin = build(release)?;
    let mut cmd = as_root(&bin)?;
    cmd.args(args);
    let what = describe(&cmd);
    println!("+ {what}");
    let err = cmd.exec();
    Err(err).with_context(|| format!("could not exec `{what}`"))
}
