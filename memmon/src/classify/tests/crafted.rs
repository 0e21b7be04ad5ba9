//! Crafted ELF files a local user can map: classification work per region
//! must stay bounded however many sections or segments they declare.

use std::{collections::HashMap, sync::Arc};

use super::*;
use crate::elf::{MAX_SECTIONS_PER_REGION, parse_elf};
use memmon_testkit::crafted_elf;

const PAGE: u64 = 4096;

fn classify_mapped(info: crate::elf::ElfInfo, mappings: u64) -> Classification {
    let regions: Vec<Region> = (0..mappings)
        .map(|i| {
            let start = 0x7f00_0000_0000 + 2 * i * PAGE;
            region(start, start + PAGE, "r--p", 0, file("/tmp/crafted"))
        })
        .collect();
    let space = AddressSpace::from_regions(regions);
    let elfs = HashMap::from([("/tmp/crafted".to_string(), Arc::new(info))]);
    classify(&ClassifyInput {
        space: &space,
        exe: None,
        elfs: &elfs,
        thread_stack_pointers: &[],
        probe: None,
    })
}

#[test]
fn many_sections_are_indexed_and_capped_per_region() {
    let info = parse_elf(&crafted_elf(65_534, 1)).unwrap();
    assert_eq!(info.sections.len(), 65_534);
    let c = classify_mapped(info, 1000);
    assert_eq!(c.regions.len(), 1000);
    // The load bias comes from the lowest mapping; the others map file
    // offset 0 where the segment would need another offset: plain file.
    let (first, rest) = c.regions.split_first().unwrap();
    assert_eq!(first.kind, RegionKind::Rodata, "{first:?}");
    assert_eq!(first.sections.len(), MAX_SECTIONS_PER_REGION, "{first:?}");
    assert!(
        rest.iter().all(|r| r.kind == RegionKind::File),
        "{:?}",
        rest[0]
    );
}

#[test]
fn many_segments_still_find_the_load_bias() {
    // Every mapping (offset 0) fits every PT_LOAD: 4,096 candidate biases
    // per mapping. The lowest mapping's first candidate wins the tie.
    let info = parse_elf(&crafted_elf(8, 4096)).unwrap();
    assert_eq!(info.loads().count(), 4096);
    let c = classify_mapped(info, 1000);
    assert_eq!(c.regions.len(), 1000);
    assert!(
        c.regions.iter().all(|r| r.segment.is_some()),
        "{:?}",
        c.regions[0]
    );
}
