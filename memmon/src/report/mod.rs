//! A process's layout as users see it: every region named in the seed
//! documents' words, the gaps, the ELF view, the ASLR verdict and W^X
//! findings. Built in the daemon from its model, sent over the socket,
//! rendered by the CLI (JSON or table). Addresses are `"0x…"` strings.

mod build;
pub mod columns;
pub mod diff;
mod elf_cache;
mod elf_reader;
pub mod origins;
pub mod picture;
pub(crate) mod remote_fs;
mod rss;
mod size;
mod summary;
pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use build::build_layout;
pub use elf_cache::ElfCache;
pub use elf_reader::{DEFAULT_READ_DEADLINE, ElfRead, ElfReader, SKIPPED_REMOTE};
pub use rss::{Rss, SmapsEntry, attach as attach_rss, parse_smaps};
pub use size::human_size;
pub use summary::{ProcessSummary, summarize};

use crate::{
    classify::RegionKind,
    rules::{AslrVerdict, WxReason},
};

pub fn hex(value: u64) -> String {
    format!("{value:#x}")
}

/// The inverse of [`hex`]: `"0x7ffd44c39000"` back to a number.
pub fn parse_hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Layout {
    pub pid: u32,
    /// /proc/PID/stat start time: with the pid, which process this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_ticks: Option<u64>,
    pub comm: String,
    pub exe: Option<String>,
    pub uid: Option<u32>,
    pub elf: Option<ElfView>,
    /// Every mapped ELF object (the executable, the loader, libraries).
    #[serde(default)]
    pub objects: Vec<ElfView>,
    pub aslr: AslrVerdict,
    pub wx: Vec<WxView>,
    pub heap: Option<HeapView>,
    pub regions: Vec<RegionView>,
    pub gaps: Vec<GapView>,
    /// Bytes mapped per region kind.
    pub totals: BTreeMap<RegionKind, u64>,
    pub mapped_bytes: u64,
    /// The regions' smaps numbers summed by kind, only when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_totals: Option<BTreeMap<RegionKind, Rss>>,
    /// What could not be read for this layout (e.g. the process's memory
    /// timed out), so what it affects is classified less precisely.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Recent memory events, oldest first (only when asked for).
    #[serde(default)]
    pub events: Vec<EventView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionView {
    pub start: String,
    pub end: String,
    pub size: u64,
    /// `r-xp` etc., as in /proc/PID/maps.
    pub perms: String,
    pub offset: u64,
    /// The pathname field exactly as /proc prints it.
    pub path: String,
    pub kind: RegionKind,
    /// The executable or library this region belongs to.
    pub object: Option<String>,
    /// readelf's segment number of the PT_LOAD behind it.
    pub segment: Option<usize>,
    pub sections: Vec<String>,
    /// Why the file behind it was not read, e.g. "unreadable (timed out)"
    /// (its kind, object and sections are then unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// From /proc/PID/smaps, only when asked for (`query --rss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss: Option<Rss>,
    /// With `query --origins`: the call that made the region's first byte
    /// (`seed` when it predates memmon's view of the process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<origins::OriginView>,
    /// The last mprotect or mremap that changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_changed: Option<origins::OriginView>,
    /// Every part with its own origin, when the kernel merged memory made
    /// by different calls into this one region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<origins::RangeOrigin>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapView {
    pub start: String,
    pub end: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ElfView {
    pub path: String,
    /// `EXEC` or `DYN`.
    pub elf_type: String,
    pub pie: bool,
    pub entry: String,
    pub interpreter: Option<String>,
    /// Where the image was loaded relative to its link-time addresses.
    pub load_bias: Option<String>,
    /// Entry point in the live address space (entry + load bias).
    pub live_entry: Option<String>,
    pub stack_executable: Option<bool>,
    pub segments: Vec<SegmentView>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SegmentView {
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: String,
    pub vaddr: String,
    pub filesz: u64,
    pub memsz: u64,
    /// `R E`, `RW ` as readelf prints them.
    pub flags: String,
    pub align: u64,
    pub sections: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeapView {
    pub start: String,
    pub end: String,
    pub size: u64,
    pub program_break: String,
    /// Bytes brk asked for (break - start).
    pub requested: u64,
    /// Mapped above the break.
    pub top_pad: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WxView {
    pub start: String,
    pub end: String,
    pub perms: String,
    pub path: String,
    pub reason: WxReason,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventView {
    pub ts_ns: u64,
    pub line: String,
}
