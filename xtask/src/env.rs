//! Shared helpers: repository paths, the pinned toolchain, running commands.

use std::env;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A child process that exited unsuccessfully; `main` exits with its code.
#[derive(Debug)]
pub struct Failed {
    pub what: String,
    pub code: i32,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed with exit code {}", self.what, self.code)
    }
}

impl std::error::Error for Failed {}

pub fn repo_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// Cargo's target dir; a relative CARGO_TARGET_DIR is taken from the repo
/// root, where we run cargo.
pub fn target_dir() -> PathBuf {
    repo_root().join(env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
}

/// The channel pinned in rust-toolchain.toml. A line scan avoids a toml
/// dependency for one key.
pub fn pinned_channel() -> Result<String> {
    let path = repo_root().join("rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next()
        .with_context(|| format!("no `channel = ...` in {}", path.display()))
}

/// The toolchain subprocesses use: an explicit RUSTUP_TOOLCHAIN wins, else the
/// pinned channel, so rustc, rust-src and bpf-linker's libLLVM all agree.
pub fn toolchain() -> Result<String> {
    match env::var("RUSTUP_TOOLCHAIN") {
        Ok(tc) if !tc.is_empty() => Ok(tc),
        _ => pinned_channel(),
    }
}

/// The chosen toolchain's sysroot: rust-src (setup) and libLLVM
/// (bpf-linker) both live under it.
pub fn sysroot() -> Result<PathBuf> {
    Ok(PathBuf::from(output(
        rust_cmd("rustc")?.args(["--print", "sysroot"]),
    )?))
}

/// A command run from the repo root on the chosen toolchain.
pub fn rust_cmd(program: &str) -> Result<Command> {
    let mut cmd = Command::new(program);
    cmd.current_dir(repo_root())
        .env("RUSTUP_TOOLCHAIN", toolchain()?);
    Ok(cmd)
}

/// `cargo` on the pinned toolchain. RUSTC_BOOTSTRAP is deliberately NOT
/// set here: memmon's build.rs sets it for the nested eBPF build only, and
/// setting it for the outer build would make every build script that
/// watches it (anyhow, proc-macro2, ...) rerun between plain `cargo` and
/// `cargo xtask` invocations.
pub fn cargo() -> Result<Command> {
    rust_cmd("cargo")
}

pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Run to completion with inherited stdio; a non-zero exit becomes `Failed`.
pub fn run(cmd: &mut Command) -> Result<()> {
    let what = describe(cmd);
    println!("+ {what}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{what}`"))?;
    if !status.success() {
        // Killed by a signal: report the shell's 128+N convention.
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        return Err(Failed { what, code }.into());
    }
    Ok(())
}

/// Run and capture stdout; fails on a non-zero exit.
pub fn output(cmd: &mut Command) -> Result<String> {
    let what = describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Where `program` would be found on PATH, without relying on `which`.
pub fn find_in_path(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let program = program.as_ref();
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Effective uid from /proc, which saves a libc dependency for one call.
pub fn is_root() -> Result<bool> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no effective Uid in /proc/self/status")?;
    Ok(euid == "0")
}

/// `program` run as root: directly when we are root, else through `sudo -E`.
pub fn as_root(program: impl AsRef<OsStr>) -> Result<Command> {
    if is_root()? {
        return Ok(Command::new(program));
    }
    if find_in_path("sudo").is_none() {
        bail!(
            "{} needs root, and sudo is not installed; re-run as root",
            program.as_ref().to_string_lossy()
        );
    }
    let mut cmd = Command::new("sudo");
    cmd.arg("-E").arg(program);
    Ok(cmd)
}
