use super::*;
use crate::model::Region;
use crate::procmaps::parse_maps;

const P: u64 = 0x1000;

fn region(start: u64, end: u64, perms: &str, backing: Backing, offset: u64) -> Region {
    Region::new(start, end, Perms::parse(perms).unwrap(), offset, backing)
}

fn file(path: &str) -> Backing {
    Backing::File {
        path: path.into(),
        dev_major: 8,
        dev_minor: 1,
        inode: 9,
    }
}

/// A model seeded from maps text, with the given brk and stack.
fn seeded(text: &str, brk: Option<(u64, u64)>, start_stack: Option<u64>) -> AddressSpace {
    let mut space = AddressSpace::new();
    for entry in parse_maps(text).unwrap() {
        space.map_region(entry.to_region());
    }
    space.brk = brk.map(|(start_brk, brk)| crate::model::BrkState {
        start_brk,
        brk,
        exact: false,
    });
    space.start_stack = start_stack;
    space
}

const KERNEL: &str = "\
00400000-00402000 r--p 00000000 08:01 9                                  /bin/x
00402000-00405000 r-xp 00002000 08:01 9                                  /bin/x
00600000-00621000 rw-p 00000000 00:00 0                                  [heap]
7ffd0000-7ffd2000 rw-p 00000000 00:00 0                                  [stack]
";

#[test]
fn identical_is_clean() {
    let model = seeded(KERNEL, Some((0x600000, 0x621000)), Some(0x7ffd1000));
    assert_eq!(compare(&model, &parse_maps(KERNEL).unwrap()), vec![]);
}

#[test]
fn splits_and_merges_do_not_count() {
    let mut model = AddressSpace::new();
    // The kernel shows one VMA where the model has two, and vice versa.
    model.map_region(region(0x400000, 0x401000, "r--p", file("/bin/x"), 0));
    model.regions.insert(
        0x402000,
        region(0x401000, 0x402000, "r--p", file("/bin/x"), 0x1000),
    );
    assert_eq!(model.region_count(), 2, "unmerged on purpose");
    model.map_region(region(0x402000, 0x405000, "r-xp", file("/bin/x"), 0x2000));
    let kernel = parse_maps(
        "00400000-00402000 r--p 00000000 08:01 9 /bin/x\n\
         00402000-00404000 r-xp 00002000 08:01 9 /bin/x\n\
         00404000-00405000 r-xp 00004000 08:01 9 /bin/x\n",
    )
    .unwrap();
    assert_eq!(compare(&model, &kernel), vec![]);
}

#[test]
fn file_offsets_are_compared() {
    let mut model = AddressSpace::new();
    model.map_region(region(0x400000, 0x402000, "r--p", file("/bin/x"), 0x1000));
    let kernel = parse_maps("00400000-00402000 r--p 00000000 08:01 9 /bin/x\n").unwrap();
    let diffs = compare(&model, &kernel);
    assert_eq!(diffs.len(), 1);
    assert_eq!(
        diffs[0].to_string(),
        "0x400000-0x402000 (8 KiB): model r--p \"/bin/x\" @0x1000 vs kernel r--p \"/bin/x\" @0x0"
    );
}

#[test]
fn heap_perms_and_path_difference() {
    let mut model = seeded(KERNEL, None, Some(0x7ffd1000));
    model.mprotect(0x600000, 0x2000, 1);
    let diffs = compare(&model, &parse_maps(KERNEL).unwrap());
    let lines: Vec<String> = diffs.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "0x600000-0x602000 (8 KiB): model r--p \"\" vs kernel rw-p \"[heap]\"",
            "0x602000-0x621000 (124 KiB): model rw-p \"\" vs kernel rw-p \"[heap]\"",
        ]
    );
}

#[test]
fn only_in_one_side() {
    let mut model = seeded(KERNEL, Some((0x600000, 0x621000)), Some(0x7ffd1000));
    model.munmap(0x402000, 0x1000);
    model.mmap(0x800000, 0x100000, 3, 0x22, Backing::anonymous(), 0);
    let lines: Vec<String> = compare(&model, &parse_maps(KERNEL).unwrap())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "0x402000-0x403000 (4 KiB): only in kernel: r-xp \"/bin/x\" @0x2000",
            "0x800000-0x900000 (1 MiB): only in model: rw-p \"\"",
        ]
    );
}

#[test]
fn stack_growth_is_tolerated_both_ways() {
    let model = seeded(KERNEL, Some((0x600000, 0x621000)), Some(0x7ffd1000));
    let grown = KERNEL.replace("7ffd0000-7ffd2000", "7ffc0000-7ffd2000");
    assert_eq!(compare(&model, &parse_maps(&grown).unwrap()), vec![]);
    let shrunk = KERNEL.replace("7ffd0000-7ffd2000", "7ffd1000-7ffd2000");
    assert_eq!(compare(&model, &parse_maps(&shrunk).unwrap()), vec![]);
}

#[test]
fn stack_exception_is_narrow() {
    let model = seeded(KERNEL, Some((0x600000, 0x621000)), Some(0x7ffd1000));
    // Above the stack, or a differently-permissioned extension, still counts.
    let above = KERNEL.replace("7ffd0000-7ffd2000", "7ffd0000-7ffd3000");
    assert_eq!(compare(&model, &parse_maps(&above).unwrap()).len(), 1);
    let text = format!("{KERNEL}7ffc0000-7ffd0000 r--p 00000000 00:00 0 [stack]\n");
    let mut kernel = parse_maps(&text).unwrap();
    kernel.sort_by_key(|e| e.start);
    assert_eq!(compare(&model, &kernel).len(), 1);
    // No [stack] in the model at all: a real difference.
    let no_stack = seeded(KERNEL, Some((0x600000, 0x621000)), None);
    assert_eq!(compare(&no_stack, &parse_maps(KERNEL).unwrap()).len(), 1);
}

#[test]
fn difference_serializes() {
    let diff = Difference {
        start: 0x1000,
        end: 0x3000,
        model: None,
        kernel: Some(View {
            perms: Perms::parse("rw-p").unwrap(),
            path: "[heap]".into(),
            offset: None,
        }),
    };
    assert_eq!(
        diff.to_string(),
        "0x1000-0x3000 (8 KiB): only in kernel: rw-p \"[heap]\""
    );
    let json = serde_json::to_string(&diff).unwrap();
    assert!(json.contains("\"kernel\":{\"perms\""), "{json}");
    assert_eq!(human_size(P * 3), "12 KiB");
    assert_eq!(human_size(1 << 21), "2 MiB");
}
