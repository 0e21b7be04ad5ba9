//! Checks that turn the kernel's terse refusals into one clear sentence,
//! made before anything is loaded.

use std::{ffi::CString, fs, io, path::Path};

use super::BpfError;

pub const TRACEFS: &str = "/sys/kernel/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from /proc/self/status.
fn effective_caps() -> io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| io::Error::other("no CapEff line in /proc/self/status"))
}

/// Root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN covers both on old kernels).
pub fn check_privileges() -> Result<(), BpfError> {
    let caps = effective_caps()?;
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let mut missing = Vec::new();
    if euid != 0 {
        missing.push(format!("root (running as uid {euid})"));
    }
    for (cap, name) in [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")] {
        if !has(cap) {
            missing.push(name.to_owned());
        }
    }
    Err(BpfError::Privileges(missing.join(", ")))
}

pub fn check_btf() -> Result<(), BpfError> {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Ok(())
    } else {
        Err(BpfError::NoBtf)
    }
}

/// Tracepoint attach goes through tracefs, which this machine does not
/// mount at boot: mount it when missing.
pub fn ensure_tracefs() -> Result<(), BpfError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    let source = CString::new("tracefs").expect("no NUL");
    let target = CString::new(TRACEFS).expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(BpfError::Tracefs(io::Error::last_os_error()));
    }
    if Path::new(TRACEFS).join("events").is_dir() {
        Ok(())
    } else {
        Err(BpfError::Tracefs(io::Error::other(
            "mounted, but it has no events/ directory",
        )))
    }
}
