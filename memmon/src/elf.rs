//! ELF headers of the executables and libraries a process maps: just enough
//! to tell which part of a mapping is text, rodata, data or bss.
//!
//! Input is untrusted (any file a process maps): every count and offset is
//! bounds-checked by `object`, and the sizes of what we build from it are
//! capped, so hostile files give an error, never a panic or a huge allocation.

mod parse;

use std::fmt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use parse::{parse_elf, parse_elf_from};

/// Largest file `read_elf` reads: bigger than any real library, small
/// enough that a hostile or sparse file can't exhaust memory.
pub const MAX_FILE_SIZE: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{}: deleted since it was mapped", .0.display())]
    Deleted(PathBuf),
    #[error("{}: no such file", .0.display())]
    NotFound(PathBuf),
    #[error("{}: permission denied", .0.display())]
    PermissionDenied(PathBuf),
    #[error("{}: not a regular file", .0.display())]
    NotRegularFile(PathBuf),
    #[error("{}: {size} bytes, over the {MAX_FILE_SIZE}-byte limit", .path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not an ELF file")]
    NotElf,
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
    #[error("ELF has too many {0} to be plausible")]
    TooMany(&'static str),
}

/// `e_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElfType {
    Exec,
    Dyn,
    Rel,
    Core,
    Other(u16),
}

/// `p_flags` as readelf prints them (`R E`, `RW `).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SegmentFlags {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl fmt::Display for SegmentFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |on: bool, ch: char| if on { ch } else { ' ' };
        write!(
            f,
            "{}{}{}",
            c(self.read, 'R'),
            c(self.write, 'W'),
            c(self.exec, 'E')
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramHeader {
    /// readelf's name without `PT_` (`LOAD`, `GNU_RELRO`), or hex if unknown.
    pub kind: String,
    pub p_type: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub flags: SegmentFlags,
    pub align: u64,
    /// Allocated sections inside the segment, in section-table order
    /// (readelf -l's "Section to Segment mapping").
    pub sections: Vec<String>,
}

impl ProgramHeader {
    pub const PT_LOAD: u32 = 1;

    pub fn is_load(&self) -> bool {
        self.p_type == Self::PT_LOAD
    }
}

/// The `sh_flags` bits that matter for memory layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SectionFlags {
    pub alloc: bool,
    pub write: bool,
    pub exec: bool,
    pub tls: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Section {
    pub name: String,
    pub sh_type: u32,
    pub addr: u64,
    pub size: u64,
    pub offset: u64,
    pub flags: SectionFlags,
}

impl Section {
    pub const SHT_NOBITS: u32 = 8;

    /// Occupies memory but no file bytes (`.bss`, `.tbss`).
    pub fn is_nobits(&self) -> bool {
        self.sh_type == Self::SHT_NOBITS
    }
}

/// A half-open virtual address range `[start, end)` (unrelocated).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct VaddrRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ElfInfo {
    pub elf_type: ElfType,
    pub is_64bit: bool,
    pub machine: u16,
    /// A position-independent executable, as opposed to a shared library.
    pub is_pie: bool,
    pub entry: u64,
    /// `PT_INTERP`: the dynamic loader's path.
    pub interpreter: Option<String>,
    pub program_headers: Vec<ProgramHeader>,
    pub sections: Vec<Section>,
    /// `PT_GNU_RELRO`: made read-only by the loader after relocation.
    pub relro: Option<VaddrRange>,
    /// `PT_GNU_STACK` has `E`; `None` without a `PT_GNU_STACK`, where the
    /// kernel's legacy default is an executable stack.
    pub stack_executable: Option<bool>,
    /// Built once per file by [`ElfInfo::indexed`]: classifying a region
    /// then costs a binary search, not sections x segment entries (a file
    /// with 65,534 sections mapped 1,000 times took seconds per query).
    #[serde(skip)]
    pub section_index: SectionIndex,
}

/// For each program header, the sections readelf maps into it that occupy
/// address space of their own (allocated, and not `.tbss`), as indices
/// into [`ElfInfo::sections`] sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SectionIndex {
    by_segment: Vec<Vec<u32>>,
}

/// Sections looked at per region: real objects have a handful per page;
/// past this a hostile file's names are cut, its work bounded.
const MAX_SECTIONS_SCANNED: usize = 4096;
/// Section names reported per region.
pub const MAX_SECTIONS_PER_REGION: usize = 64;

impl ElfInfo {
    /// Builds [`ElfInfo::section_index`]; [`parse_elf`] returns indexed
    /// objects, hand-built ones must call this.
    pub fn indexed(mut self) -> Self {
        let mut by_segment = Vec::with_capacity(self.program_headers.len());
        for ph in &self.program_headers {
            let names: std::collections::HashSet<&str> =
                ph.sections.iter().map(String::as_str).collect();
            let mut ids: Vec<u32> = (0..self.sections.len() as u32)
                .filter(|&i| {
                    let s = &self.sections[i as usize];
                    s.flags.alloc
                        && !(s.flags.tls && s.is_nobits())
                        && names.contains(s.name.as_str())
                })
                .collect();
            ids.sort_by_key(|&i| self.sections[i as usize].addr);
            by_segment.push(ids);
        }
        self.section_index = SectionIndex { by_segment };
        self
    }

    /// The sections of program header `segment` that overlap the unrelocated
    /// range `[lo, hi)`, in address order, at most
    /// [`MAX_SECTIONS_PER_REGION`] of them.
    pub fn sections_overlapping(&self, segment: usize, lo: u64, hi: u64) -> Vec<&Section> {
        let Some(ids) = self.section_index.by_segment.get(segment) else {
            return Vec::new();
        };
        // Sorted by start: those before `below` start below `hi`; walking
        // back from there, keep the ones that also end above `lo`.
        let below = ids.partition_point(|&i| self.sections[i as usize].addr < hi);
        let mut found: Vec<&Section> = ids[..below]
            .iter()
            .rev()
            .take(MAX_SECTIONS_SCANNED)
            .map(|&i| &self.sections[i as usize])
            .filter(|s| s.addr.saturating_add(s.size) > lo)
            .take(MAX_SECTIONS_PER_REGION)
            .collect();
        found.reverse();
        found
    }

    /// `PT_LOAD` headers with their index in `program_headers`.
    pub fn loads(&self) -> impl Iterator<Item = (usize, &ProgramHeader)> {
        self.program_headers
            .iter()
            .enumerate()
            .filter(|(_, ph)| ph.is_load())
    }
}

const PAGE: u64 = crate::model::PAGE_SIZE;

const fn page_down(v: u64) -> u64 {
    v & !(PAGE - 1)
}

/// (mapping, `PT_LOAD`) pairs [`load_bias`] considers.
const MAX_BIAS_CANDIDATES: usize = 1 << 12;

/// The load bias (runtime address minus link-time address) of an object,
/// given its live file mappings as `(region_start, file_offset)`.
///
/// Each mapping votes for the bias implied by every `PT_LOAD` whose file
/// pages contain its offset; two segments can share a file page (the
/// rodata/data boundary), so the bias most mappings agree on wins.
pub fn load_bias(info: &ElfInfo, mappings: &[(u64, u64)]) -> Option<u64> {
    // bias -> (votes, first seen). A real object has a handful of
    // mappings and PT_LOADs; a hostile one can declare thousands of each,
    // so only the first MAX_BIAS_CANDIDATES (mapping, segment) pairs vote.
    let mut votes: std::collections::HashMap<u64, (usize, usize)> = Default::default();
    let pairs = mappings
        .iter()
        .flat_map(|&(start, offset)| info.loads().map(move |(_, ph)| (start, offset, ph)))
        .take(MAX_BIAS_CANDIDATES);
    for (start, offset, ph) in pairs {
        let file_start = page_down(ph.offset);
        let file_end = ph.offset.saturating_add(ph.filesz);
        // A segment maps the file pages overlapping [p_offset, +filesz).
        if ph.filesz == 0 || offset < file_start || offset >= file_end {
            continue;
        }
        let vaddr = page_down(ph.vaddr).wrapping_add(offset - file_start);
        let bias = start.wrapping_sub(vaddr);
        if !bias.is_multiple_of(PAGE) {
            continue;
        }
        let order = votes.len();
        votes.entry(bias).or_insert((0, order)).0 += 1;
    }
    // Ties go to the first candidate, which comes from the lowest mapping.
    votes
        .into_iter()
        .max_by(|(_, (n1, o1)), (_, (n2, o2))| n1.cmp(n2).then(o2.cmp(o1)))
        .map(|(bias, _)| bias)
}

/// Reads and parses an ELF file, refusing non-regular and oversized files.
pub fn read_elf(path: &Path) -> Result<ElfInfo, ElfError> {
    let io_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound if path.to_string_lossy().ends_with(" (deleted)") => {
            ElfError::Deleted(path.into())
        }
        std::io::ErrorKind::NotFound => ElfError::NotFound(path.into()),
        std::io::ErrorKind::PermissionDenied => ElfError::PermissionDenied(path.into()),
        _ => ElfError::Io {
            path: path.into(),
            source: e,
        },
    };
    // Checked before open: opening a FIFO would block.
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(ElfError::NotRegularFile(path.into()));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(ElfError::TooLarge {
            path: path.into(),
            size: meta.len(),
        });
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err)?;
    // Only the headers and the tables they point at are read, through a
    // cache: a daemon looking at a 150 MiB shared object must not read it.
    let cache = object::read::ReadCache::new(file);
    parse_elf_from(&cache)
}

#[cfg(test)]
mod tests;
