//! Classifier tests: hand-built spaces after the seed documents' maps
//! listings, and this test process's own live layout.

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
    Region {
        start,
        end,
        perms: Perms::parse(perms).unwrap(),
        offset,
        backing,
        map_stack: false,
    }
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
