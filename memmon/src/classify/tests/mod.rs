//! Classifier tests: hand-built spaces after the seed documents' maps
//! listings, and this test process's own live layout.

mod crafted;
mod fixtures;
mod live;
mod seeds;

use super::*;
use crate::model::Perms;

pub(super) fn file(path: &str) -> Backing {
    Backing::File {
        path: path.into(),
        dev_major: 259,
        dev_minor: 5,
        inode: 9835249,
    }
}

pub(super) fn anon() -> Backing {
    Backing::anonymous()
}

pub(super) fn special(name: &str) -> Backing {
    Backing::Special { name: name.into() }
}

/// One maps line's worth: `start-end perms offset backing`.
pub(super) fn region(start: u64, end: u64, perms: &str, offset: u64, backing: Backing) -> Region {
    Region::new(start, end, Perms::parse(perms).unwrap(), offset, backing)
}

/// The classification of the region starting at `start`.
pub(super) fn at(c: &Classification, start: u64) -> &ClassifiedRegion {
    c.regions
        .iter()
        .find(|r| r.start == start)
        .unwrap_or_else(|| panic!("no region at {start:#x}"))
}

pub(super) fn kind_at(c: &Classification, start: u64) -> RegionKind {
    at(c, start).kind
}

#[test]
fn kinds_serialize_kebab_case() {
    let json = serde_json::to_string(&[RegionKind::MmapChunk, RegionKind::ThreadStack]).unwrap();
    assert_eq!(json, r#"["mmap-chunk","thread-stack"]"#);
    assert_eq!(RegionKind::MmapChunk.to_string(), "mmap-chunk");
}

#[test]
fn syscall_file_stack_pointer() {
    let in_syscall = "202 0x7f12 0x80 0x0 0x0 0x0 0x0 0x7ffd5d3c1e28 0x7f0a1b2c3d4e\n";
    assert_eq!(parse_syscall_sp(in_syscall), Some(0x7ffd5d3c1e28));
    assert_eq!(parse_syscall_sp("-1 0x7ffc0000 0x401000"), Some(0x7ffc0000));
    assert_eq!(parse_syscall_sp("running\n"), None);
    assert_eq!(parse_syscall_sp(""), None);
    assert_eq!(parse_syscall_sp("-1 zz 0x1"), None);
}

mod hostile {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// ELF headers come from untrusted files: any segment numbers
        /// against any mappings must classify without panicking.
        #[test]
        fn arbitrary_segments_never_panic(
            loads in proptest::collection::vec(
                (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()), 0..6),
            maps in proptest::collection::vec((0u64..1 << 20, 1u64..64, any::<u64>(), any::<bool>()), 0..12),
        ) {
            let mut info = super::fixtures::libc_235();
            info.relro = Some(crate::elf::VaddrRange { start: loads.first().map_or(0, |l| l.0), end: u64::MAX });
            for (i, &(offset, vaddr, filesz, memsz, w)) in loads.iter().enumerate() {
                let ph = &mut info.program_headers[i % 4];
                (ph.offset, ph.vaddr, ph.filesz, ph.memsz, ph.flags.write) = (offset, vaddr, filesz, memsz, w);
            }
            let mut next = 0u64;
            let regions: Vec<Region> = maps
                .iter()
                .map(|&(gap, pages, offset, is_file)| {
                    let start = next + gap * 4096;
                    next = start + pages * 4096;
                    let backing = if is_file { file("/lib/x.so") } else { anon() };
                    region(start, next, if is_file { "r--p" } else { "rw-p" }, offset & !0xfff, backing)
                })
                .collect();
            let space = AddressSpace::from_regions(regions);
            let elfs = HashMap::from([("/lib/x.so".to_string(), std::sync::Arc::new(info))]);
            let c = classify(&ClassifyInput {
                space: &space,
                exe: Some("/lib/x.so"),
                elfs: &elfs,
                thread_stack_pointers: &[0, u64::MAX],
                probe: Some(&|a| Some((a as u128).to_ne_bytes())),
            });
            prop_assert_eq!(c.regions.len(), space.region_count());
        }
    }
}
