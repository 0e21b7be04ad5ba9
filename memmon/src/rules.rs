//! Security-relevant verdicts on a process: how much ASLR it really gets,
//! and which mappings break W^X.

use serde::Serialize;

use crate::elf::{ElfInfo, ElfType};
use crate::model::{AddressSpace, Backing};

/// `personality(2)` flag set by `setarch -R` (and by gdb by default).
pub const ADDR_NO_RANDOMIZE: u32 = 0x0040000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AslrStatus {
    Full,
    Partial,
    Off,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AslrVerdict {
    pub status: AslrStatus,
    pub reasons: Vec<String>,
    /// Short machine-readable codes of what weakens ASLR (metric labels):
    /// `randomize_va_space_0`, `randomize_va_space_1`,
    /// `addr_no_randomize`, `non_pie`.
    #[serde(default)]
    pub codes: Vec<String>,
}

/// Combines the system setting, the process's personality and its
/// executable's type; the status is the worst that any reason implies.
pub fn aslr_verdict(
    randomize_va_space: u8,
    personality: u32,
    exe: Option<&ElfInfo>,
) -> AslrVerdict {
    let mut status = AslrStatus::Full;
    let mut reasons = Vec::new();
    let mut codes = Vec::new();
    let mut note = |s: AslrStatus, reason: String| {
        status = status.max(s);
        reasons.push(reason);
    };
    let weakened_by = |code: &str, codes: &mut Vec<String>| codes.push(code.to_owned());
    match randomize_va_space {
        0 => weakened_by("randomize_va_space_0", &mut codes),
        1 => weakened_by("randomize_va_space_1", &mut codes),
        _ => {}
    }
    if personality & ADDR_NO_RANDOMIZE != 0 {
        weakened_by("addr_no_randomize", &mut codes);
    }
    if exe.is_some_and(|info| info.elf_type == ElfType::Exec) {
        weakened_by("non_pie", &mut codes);
    }
    match randomize_va_space {
        0 => note(
            AslrStatus::Off,
            "kernel.randomize_va_space=0: the kernel randomizes nothing".into(),
        ),
        1 => note(
            AslrStatus::Partial,
            "kernel.randomize_va_space=1: stack, mmap area and vdso are randomized, \
             the brk heap not randomized"
                .into(),
        ),
        n => note(
            AslrStatus::Full,
            format!("randomize_va_space={n}: stack, mmap area, vdso and brk heap are randomized"),
        ),
    }
    if personality & ADDR_NO_RANDOMIZE != 0 {
        note(
            AslrStatus::Off,
            "personality has ADDR_NO_RANDOMIZE (started under setarch -R or gdb): \
             nothing is randomized for this process"
                .into(),
        );
    }
    match exe {
        Some(info) if info.elf_type == ElfType::Exec => note(
            AslrStatus::Partial,
            "executable is not PIE (ET_EXEC): its text, data and brk heap are at fixed addresses"
                .into(),
        ),
        Some(info) if info.is_pie => note(
            AslrStatus::Full,
            "PIE executable: its load address is randomized".into(),
        ),
        Some(_) => {}
        None => reasons.push("executable unknown: its randomization not checked".into()),
    }
    AslrVerdict {
        status,
        reasons,
        codes,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: String, content: String },
}

fn read_trimmed(path: &str) -> Result<String, ReadError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| ReadError::Io {
            path: path.into(),
            source,
        })
}

/// `/proc/sys/kernel/randomize_va_space`: 0, 1 or 2.
pub fn read_randomize_va_space() -> Result<u8, ReadError> {
    let path = "/proc/sys/kernel/randomize_va_space";
    let s = read_trimmed(path)?;
    s.parse().map_err(|_| ReadError::Parse {
        path: path.into(),
        content: s,
    })
}

/// `/proc/PID/personality` (hex, e.g. `00040000`).
pub fn read_personality(pid: u32) -> Result<u32, ReadError> {
    let path = format!("/proc/{pid}/personality");
    let s = read_trimmed(&path)?;
    u32::from_str_radix(&s, 16).map_err(|_| ReadError::Parse { path, content: s })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WxReason {
    /// Writable and executable at once: injected code runs directly.
    WritableExecutable,
    /// Executable memory not backed by any file (JIT, shellcode).
    ExecutableAnonymous,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WxFinding {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub path: String,
    pub reason: WxReason,
}

/// Regions breaking W^X. Kernel special mappings ([vdso], [vsyscall], ...)
/// are executable by design and skipped.
pub fn wx_findings(space: &AddressSpace) -> Vec<WxFinding> {
    space
        .regions()
        .filter(|r| !matches!(r.backing, Backing::Special { .. }) && r.perms.exec)
        .filter_map(|r| {
            let reason = if r.perms.write {
                WxReason::WritableExecutable
            } else if matches!(r.backing, Backing::Anonymous { .. }) {
                WxReason::ExecutableAnonymous
            } else {
                return None;
            };
            Some(WxFinding {
                start: r.start,
                end: r.end,
                perms: r.perms.to_string(),
                path: space.display_path(r),
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
