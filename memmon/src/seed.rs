//! Seeding the model from a live process's /proc entries.

use std::io;

use procfs::ProcError;
use procfs::process::Process;
use thiserror::Error;

use crate::model::{AddressSpace, BrkState};
use crate::procmaps::{self, ParseError};

#[cfg(test)]
mod tests;

/// A process as /proc showed it at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat (clock ticks since boot); with the pid it
    /// identifies the process across pid reuse.
    pub start_time_ticks: u64,
    pub comm: String,
    /// The /proc/PID/exe link; None for kernel threads or when unreadable.
    pub exe: Option<String>,
    /// Real uid.
    pub uid: u32,
    pub personality: u32,
    /// The cgroup v2 path, when the system has one.
    pub cgroup: Option<String>,
    pub space: AddressSpace,
    /// CLOCK_MONOTONIC ns (the kernel programs' clock) just before the
    /// maps were read: every event stamped earlier is already in `space`.
    pub taken_ns: u64,
}

/// CLOCK_MONOTONIC now, in ns: the clock of `bpf_ktime_get_ns`, which
/// stamps events.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Debug, Error)]
pub enum SeedError {
    /// The process does not exist (or exited while being read).
    #[error("no such process: pid {pid}")]
    NoSuchPid { pid: u32 },
    #[error("permission denied reading {path}")]
    PermissionDenied { path: String },
    #[error("pid {pid}: {source}")]
    MalformedMaps {
        pid: u32,
        #[source]
        source: ParseError,
    },
    #[error("malformed {path}: {detail}")]
    Malformed { path: String, detail: String },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl SeedError {
    pub fn is_no_such_pid(&self) -> bool {
        matches!(self, SeedError::NoSuchPid { .. })
    }

    fn from_io(pid: u32, path: String, err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH) {
            SeedError::NoSuchPid { pid }
        } else if err.kind() == io::ErrorKind::PermissionDenied {
            SeedError::PermissionDenied { path }
        } else {
            SeedError::Io { path, source: err }
        }
    }

    fn from_proc(pid: u32, path: String, err: ProcError) -> Self {
        match err {
            ProcError::NotFound(_) => SeedError::NoSuchPid { pid },
            ProcError::PermissionDenied(_) => SeedError::PermissionDenied { path },
            ProcError::Io(source, _) => SeedError::from_io(pid, path, source),
            other => SeedError::Malformed {
                path,
                detail: other.to_string(),
            },
        }
    }
}

/// Reads pid's identity and memory map from /proc.
pub fn snapshot(pid: u32) -> Result<Snapshot, SeedError> {
    let dir = format!("/proc/{pid}");
    // procfs takes the kernel's pid_t; no process has a pid beyond it.
    let raw = i32::try_from(pid).map_err(|_| SeedError::NoSuchPid { pid })?;
    let process = Process::new(raw).map_err(|e| SeedError::from_proc(pid, dir.clone(), e))?;
    let stat_path = format!("{dir}/stat");
    // procfs splits stat at the last ')', so a comm with spaces or
    // parentheses is fine.
    let stat = process
        .stat()
        .map_err(|e| SeedError::from_proc(pid, stat_path, e))?;
    let status = process
        .status()
        .map_err(|e| SeedError::from_proc(pid, format!("{dir}/status"), e))?;
    let personality = read_personality(pid, &dir)?;
    let exe = process.exe().ok().map(|p| p.to_string_lossy().into_owned());
    let cgroup = std::fs::read_to_string(format!("{dir}/cgroup"))
        .ok()
        .and_then(|text| unified_cgroup(&text));

    let maps_path = format!("{dir}/maps");
    let taken_ns = monotonic_ns();
    let bytes = std::fs::read(&maps_path).map_err(|e| SeedError::from_io(pid, maps_path, e))?;
    // Non-UTF-8 file names are rare; lossy keeps the rest of the map usable.
    let entries = procmaps::parse_maps(&String::from_utf8_lossy(&bytes))
        .map_err(|source| SeedError::MalformedMaps { pid, source })?;

    let mut space = AddressSpace::new();
    for entry in &entries {
        space.map_region(entry.to_region());
    }
    space.start_stack = (stat.startstack != 0).then_some(stat.startstack);
    space.brk = match stat.start_brk {
        Some(start_brk) if start_brk != 0 => {
            // A heap split by mprotect shows several [heap] lines: the
            // break lies in the last one.
            let heap_end = entries
                .iter()
                .filter(|e| e.path == "[heap]")
                .map(|e| e.end)
                .max();
            Some(BrkState {
                start_brk,
                brk: heap_end.unwrap_or(start_brk),
                exact: false,
            })
        }
        _ => None,
    };

    Ok(Snapshot {
        pid,
        start_time_ticks: stat.starttime,
        comm: stat.comm,
        exe,
        uid: status.ruid,
        personality,
        cgroup,
        space,
        taken_ns,
    })
}

/// The cgroup v2 path (`0::/system.slice/ssh.service`) from /proc/PID/cgroup.
pub fn unified_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// /proc/PID/personality: one hex number.
fn read_personality(pid: u32, dir: &str) -> Result<u32, SeedError> {
    let path = format!("{dir}/personality");
    let text =
        std::fs::read_to_string(&path).map_err(|e| SeedError::from_io(pid, path.clone(), e))?;
    u32::from_str_radix(text.trim_end(), 16).map_err(|_| SeedError::Malformed {
        path,
        detail: format!("not a hex number: {text:?}"),
    })
}

/// All pids (thread-group leaders) currently in /proc.
pub fn list_pids() -> Result<Vec<u32>, SeedError> {
    let io_err = |source| SeedError::Io {
        path: "/proc".into(),
        source,
    };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}
