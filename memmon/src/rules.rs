//! Security-relevant verdicts on a process: how much ASLR it really gets,
//! and which mappings break W^X.

use std::path::Path;

use serde::Serialize;

pub mod wx_events;

use crate::elf::{ElfInfo, ElfType};
use crate::model::{AddressSpace, Backing};

/// `personality(2)` flag set by `setarch -R` (and by gdb by default).
pub const ADDR_NO_RANDOMIZE: u32 = 0x0040000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AslrStatus {
    Full,
    Partial,
    /// kernel.randomize_va_space could not be read: full, partial or off.
    /// Ordered between partial and off, so that only a certain "off"
    /// outranks it.
    Unknown,
    Off,
}

impl AslrStatus {
    pub const ALL: [AslrStatus; 4] = [
        AslrStatus::Full,
        AslrStatus::Partial,
        AslrStatus::Unknown,
        AslrStatus::Off,
    ];

    /// As serialized, and as the `status` metric label.
    pub const fn label(self) -> &'static str {
        match self {
            AslrStatus::Full => "full",
            AslrStatus::Partial => "partial",
            AslrStatus::Unknown => "unknown",
            AslrStatus::Off => "off",
        }
    }
}

/// Where the kernel's ASLR setting is read.
pub const RANDOMIZE_VA_SPACE: &str = "/proc/sys/kernel/randomize_va_space";

/// `kernel.randomize_va_space` as read, or why it could not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RandomizeVaSpace {
    Value(u8),
    Unknown(String),
}

impl RandomizeVaSpace {
    /// Reads the setting at `path` (normally [`RANDOMIZE_VA_SPACE`]).
    pub fn read(path: &Path) -> Self {
        match read_randomize_va_space(path) {
            Ok(value) => RandomizeVaSpace::Value(value),
            Err(err) => RandomizeVaSpace::Unknown(err.to_string()),
        }
    }
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
    randomize_va_space: &RandomizeVaSpace,
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
        RandomizeVaSpace::Value(0) => weakened_by("randomize_va_space_0", &mut codes),
        RandomizeVaSpace::Value(1) => weakened_by("randomize_va_space_1", &mut codes),
        _ => {}
    }
    if personality & ADDR_NO_RANDOMIZE != 0 {
        weakened_by("addr_no_randomize", &mut codes);
    }
    if exe.is_some_and(|info| info.elf_type == ElfType::Exec) {
        weakened_by("non_pie", &mut codes);
    }
    match randomize_va_space {
        RandomizeVaSpace::Value(0) => note(
            AslrStatus::Off,
            "kernel.randomize_va_space=0: the kernel randomizes nothing".into(),
        ),
        RandomizeVaSpace::Value(1) => note(
            AslrStatus::Partial,
            "kernel.randomize_va_space=1: stack, mmap area and vdso are randomized, \
             the brk heap not randomized"
                .into(),
        ),
        RandomizeVaSpace::Value(n) => note(
            AslrStatus::Full,
            format!("randomize_va_space={n}: stack, mmap area, vdso and brk heap are randomized"),
        ),
        RandomizeVaSpace::Unknown(why) => note(
            AslrStatus::Unknown,
            format!(
                "kernel.randomize_va_space unknown ({why}): what the kernel randomizes is not known"
            ),
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

fn read_trimmed(path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| ReadError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// `kernel.randomize_va_space` at `path` (normally [`RANDOMIZE_VA_SPACE`]): 0, 1 or 2.
pub fn read_randomize_va_space(path: &Path) -> Result<u8, ReadError> {
    let s = read_trimmed(path)?;
    s.parse().map_err(|_| ReadError::Parse {
        path: path.display().to_string(),
        content: s,
    })
}

/// `/proc/PID/personality` (hex, e.g. `00040000`).
pub fn read_personality(pid: u32) -> Result<u32, ReadError> {
    let path = format!("/proc/{pid}/personality");
    let s = read_trimmed(Path::new(&path))?;
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
