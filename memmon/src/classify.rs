//! What each region of an address space is: an ELF object's text, rodata,
//! data or bss, the brk heap, glibc malloc's mmap chunks and per-thread
//! arenas, thread stacks and their guards, kernel special mappings, ...

mod anon;
mod object;
mod threads;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::elf::ElfInfo;
use crate::model::{AddressSpace, Backing, Region};

pub use threads::{parse_syscall_sp, thread_stack_pointers};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RegionKind {
    Text,
    Rodata,
    Data,
    Bss,
    Heap,
    MmapChunk,
    Arena,
    ThreadStack,
    Guard,
    Stack,
    Vdso,
    Vvar,
    Vsyscall,
    File,
    Shm,
    Anon,
}

impl RegionKind {
    /// The same kebab-case name serde uses.
    pub fn as_str(self) -> &'static str {
        use RegionKind::*;
        match self {
            Text => "text",
            Rodata => "rodata",
            Data => "data",
            Bss => "bss",
            Heap => "heap",
            MmapChunk => "mmap-chunk",
            Arena => "arena",
            ThreadStack => "thread-stack",
            Guard => "guard",
            Stack => "stack",
            Vdso => "vdso",
            Vvar => "vvar",
            Vsyscall => "vsyscall",
            File => "file",
            Shm => "shm",
            Anon => "anon",
        }
    }
}

impl std::fmt::Display for RegionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassifiedRegion {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
    /// The executable or library the region belongs to (its path as maps
    /// shows it), also for the anonymous bss after a data segment.
    pub object: Option<String>,
    /// Index into the object's `ElfInfo::program_headers` of the `PT_LOAD`
    /// backing the region (readelf -l's segment number).
    pub segment: Option<usize>,
    /// Allocated sections of that segment overlapping the region.
    pub sections: Vec<String>,
}

/// The brk heap, and how much of it malloc actually asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HeapInfo {
    pub start: u64,
    pub end: u64,
    pub program_break: u64,
    /// Mapped above the break: the page rounding of the last brk.
    pub top_pad_bytes: u64,
    /// `break - start`: what brk calls requested in total (glibc pads each
    /// request by `M_TOP_PAD`, 128 KiB, so malloc(1000) makes 132 KiB).
    pub requested: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub regions: Vec<ClassifiedRegion>,
    pub heap: Option<HeapInfo>,
    /// Where the executable was loaded relative to its link-time addresses
    /// (0 for a non-PIE executable; random for a PIE one under ASLR).
    pub exe_load_bias: Option<u64>,
}

/// Reads 16 bytes of the target's memory at an address (e.g. through
/// /proc/PID/mem), or `None` when unreadable.
pub type MemoryProbe<'a> = &'a dyn Fn(u64) -> Option<[u8; 16]>;

/// Parsed ELF objects by path, shared with the cache that read them.
pub type ElfMap = HashMap<String, std::sync::Arc<ElfInfo>>;

pub struct ClassifyInput<'a> {
    pub space: &'a AddressSpace,
    /// The executable's path as maps shows it.
    pub exe: Option<&'a str>,
    /// Parsed ELF objects by path (a ` (deleted)` suffix may be left off).
    pub elfs: &'a ElfMap,
    /// One per thread (see `thread_stack_pointers`).
    pub thread_stack_pointers: &'a [u64],
    pub probe: Option<MemoryProbe<'a>>,
}

/// An unmapped stretch between two regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub start: u64,
    pub end: u64,
    pub size: u64,
}

/// Classifies every region of the space, in address order.
pub fn classify(input: &ClassifyInput) -> Classification {
    let space = input.space;
    let vmas: Vec<std::borrow::Cow<'_, Region>> = space.vmas().collect();
    let regions: Vec<&Region> = vmas.iter().map(|r| r.as_ref()).collect();
    let paths: Vec<String> = regions.iter().map(|r| space.display_path(r)).collect();
    let objects = object::layouts(&regions, &paths, input.elfs);
    let by_path: HashMap<&str, &object::Layout> =
        objects.iter().map(|o| (o.path.as_str(), o)).collect();

    let mut out: Vec<Option<ClassifiedRegion>> = regions
        .iter()
        .zip(&paths)
        .map(|(r, path)| fixed_kind(r, path, &objects, &by_path))
        .collect();
    anon::classify_rest(&regions, &mut out, input);
    let regions: Vec<ClassifiedRegion> = out
        .into_iter()
        .zip(&regions)
        .map(|(c, r)| c.unwrap_or_else(|| plain(r, RegionKind::Anon)))
        .collect();

    let exe_load_bias = input.exe.and_then(|exe| {
        objects
            .iter()
            .find(|o| strip_deleted(&o.path) == strip_deleted(exe))
            .map(|o| o.bias)
    });
    Classification {
        heap: heap_info(space, &regions),
        regions,
        exe_load_bias,
    }
}

/// Kinds decided by a region's own name and backing; `None` leaves an
/// anonymous region to the heuristics that look at its neighbours.
fn fixed_kind(
    r: &Region,
    path: &str,
    objects: &[object::Layout],
    by_path: &HashMap<&str, &object::Layout>,
) -> Option<ClassifiedRegion> {
    let kind = match &r.backing {
        Backing::Special { name } => match name.as_str() {
            "[vdso]" => RegionKind::Vdso,
            "[vvar]" | "[vvar_vclock]" => RegionKind::Vvar,
            "[vsyscall]" => RegionKind::Vsyscall,
            _ => RegionKind::Anon,
        },
        _ if path == "[heap]" => RegionKind::Heap,
        _ if path == "[stack]" => RegionKind::Stack,
        _ if is_shm(r, path) => RegionKind::Shm,
        Backing::File { .. } => {
            return Some(
                by_path
                    .get(path)
                    .and_then(|o| o.classify_file_region(r))
                    .unwrap_or_else(|| ClassifiedRegion {
                        object: Some(path.into()),
                        ..plain(r, RegionKind::File)
                    }),
            );
        }
        Backing::Anonymous { .. } => {
            return objects.iter().find_map(|o| o.classify_bss(r));
        }
    };
    Some(plain(r, kind))
}

/// Shared memory: memfd, SysV, POSIX (/dev/shm) and shared anonymous maps.
fn is_shm(r: &Region, path: &str) -> bool {
    path.starts_with("/memfd:")
        || path.starts_with("/SYSV")
        || path.starts_with("/dev/shm/")
        || path == "/dev/zero (deleted)"
        || path.starts_with("[anon_shmem:")
        || (matches!(r.backing, Backing::Anonymous { .. }) && r.perms.shared)
}

fn plain(r: &Region, kind: RegionKind) -> ClassifiedRegion {
    ClassifiedRegion {
        start: r.start,
        end: r.end,
        kind,
        object: None,
        segment: None,
        sections: Vec::new(),
    }
}

fn strip_deleted(path: &str) -> &str {
    path.strip_suffix(" (deleted)").unwrap_or(path)
}

fn heap_info(space: &AddressSpace, regions: &[ClassifiedRegion]) -> Option<HeapInfo> {
    let mut heap = regions.iter().filter(|r| r.kind == RegionKind::Heap);
    let first = heap.next()?;
    let end = heap.next_back().map_or(first.end, |r| r.end);
    let program_break = space.brk.map_or(end, |b| b.brk.clamp(first.start, end));
    Some(HeapInfo {
        start: first.start,
        end,
        program_break,
        top_pad_bytes: end - program_break,
        requested: program_break - first.start,
    })
}

/// The unmapped stretches between consecutive regions (on x86-64 the
/// largest is the ~127 TiB between the brk heap and the mmap area).
pub fn gaps(space: &AddressSpace) -> Vec<Gap> {
    let regions: Vec<&Region> = space.regions().collect();
    regions
        .windows(2)
        .filter(|w| w[0].end < w[1].start)
        .map(|w| Gap {
            start: w[0].end,
            end: w[1].start,
            size: w[1].start - w[0].end,
        })
        .collect()
}

/// Bytes mapped per kind.
pub fn totals_by_kind(regions: &[ClassifiedRegion]) -> BTreeMap<RegionKind, u64> {
    let mut totals = BTreeMap::new();
    for r in regions {
        *totals.entry(r.kind).or_insert(0) += r.end - r.start;
    }
    totals
}

#[cfg(test)]
mod tests;
