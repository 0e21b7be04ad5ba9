//! The memmon client, run as a test would from a shell (as root or as the
//! test user), and reading what it printed.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

use super::MEMMON;
use super::daemon::Daemon;
use super::fixtures::{TempDir, compile};
use super::stopped::{Checkpoint, Stopped};
use super::user::TestUser;

/// What one `memmon` run printed.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success; returns stdout.
    pub fn ok(&self) -> &str {
        assert!(
            self.success,
            "memmon failed; stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        &self.stdout
    }

    pub fn json(&self) -> Value {
        let stdout = self.ok();
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    /// Asserts a failure reported as exactly one line on stderr, with
    /// nothing on stdout; returns that line.
    pub fn one_line_error(&self) -> String {
        assert!(
            !self.success,
            "expected a failure, got stdout: {}",
            self.stdout
        );
        assert!(
            self.stdout.trim().is_empty(),
            "a failure printed data on stdout: {}",
            self.stdout
        );
        let err = self.stderr.trim_end();
        assert!(
            !err.is_empty() && !err.contains('\n'),
            "the error is not one line: {:?}",
            self.stderr
        );
        err.to_owned()
    }
}

/// `memmon <args> --socket <socket>`, as root or (with `user`) as that user.
pub fn memmon(user: Option<&TestUser>, socket: &Path, args: &[&str]) -> Run {
    let mut cmd = match user {
        None => Command::new(MEMMON),
        Some(user) => {
            let mut cmd = user.command();
            cmd.arg(&user.memmon);
            cmd
        }
    };
    let output = cmd
        .args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("MEMMON_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run memmon");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn query_json(user: Option<&TestUser>, socket: &Path, pid: u32, extra: &[&str]) -> Value {
    let mut args = vec!["query".to_owned(), pid.to_string(), "--json".to_owned()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    memmon(user, socket, &args).json()
}

/// `memmon ps|aslr|wx --json ...` as an array.
pub fn listing(user: Option<&TestUser>, socket: &Path, args: &[&str]) -> Vec<Value> {
    let value = memmon(user, socket, args).json();
    value
        .as_array()
        .unwrap_or_else(|| panic!("`memmon {}` is not an array: {value}", args.join(" ")))
        .clone()
}

pub fn entry_for(list: &[Value], pid: u32) -> Option<&Value> {
    list.iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
}

pub fn hex(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a hex string: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("bad hex {s}"))
}

/// The region of `layout` holding `addr`.
pub fn region_at(layout: &Value, addr: u64) -> &Value {
    layout["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| hex(&r["start"]) <= addr && addr < hex(&r["end"]))
        .unwrap_or_else(|| panic!("no region holds {addr:#x}"))
}

/// A pid no process has.
pub fn free_pid() -> u32 {
    (999_999..)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap()
}

/// The query_me fixture (see [`fixture`]) stopped at its `ready`
/// checkpoint, where `daemon` agrees with /proc.
pub struct QueryMe {
    pub run: Stopped,
    pub ready: Checkpoint,
    pub program: PathBuf,
    pub dir: TempDir,
}

impl QueryMe {
    pub fn start(daemon: &Daemon, tag: &str) -> Self {
        let (dir, program) = fixture(tag);
        let mut run = Stopped::spawn(&program, &[]);
        let ready = run.checkpoint("ready");
        daemon.assert_verified(run.pid, "query_me: ready");
        Self {
            run,
            ready,
            program,
            dir,
        }
    }
}

/// A fixture binary in a directory every user can traverse.
pub fn fixture(tag: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let program = compile(&dir, "query_me", &[]);
    (dir, program)
}

/// The fields of one `ps --json` entry, and that they add up.
pub fn check_ps_entry(entry: &Value, pid: u32, uid: u32, user: &str) {
    assert_eq!(entry["pid"], pid, "{entry}");
    assert_eq!(entry["comm"], "query_me", "{entry}");
    assert_eq!(entry["uid"], uid, "{entry}");
    assert_eq!(entry["user"], user, "{entry}");
    assert!(entry["vmas"].as_u64().unwrap_or(0) > 10, "{entry}");
    let mapped = entry["mapped_bytes"].as_u64().expect("mapped_bytes");
    let by_kind = entry["by_kind"].as_object().expect("by_kind");
    let sum: u64 = by_kind.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sum, mapped, "by_kind does not add up: {entry}");
    for kind in ["text", "heap", "stack"] {
        assert!(by_kind.contains_key(kind), "no {kind} in {entry}");
    }
    assert!(
        ["full", "partial", "off"].contains(&entry["aslr"]["status"].as_str().unwrap_or("")),
        "{entry}"
    );
    assert!(entry["aslr"]["reasons"].is_array(), "{entry}");
    assert!(entry["wx_count"].is_u64(), "{entry}");
}
