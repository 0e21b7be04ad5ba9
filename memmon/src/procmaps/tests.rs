use proptest::prelude::*;

use super::*;

// Lines copied from /proc/self/maps on the 6.18 development machine.
const REAL: &str = "\
556a193f6000-556a193f8000 r--p 00000000 fe:00 247030                     /usr/bin/cat
556a193f8000-556a193fd000 r-xp 00002000 fe:00 247030                     /usr/bin/cat
556a3b802000-556a3b823000 rw-p 00000000 00:00 0                          [heap]
7fc7abfbb000-7fc7abfdd000 rw-p 00000000 00:00 0 
7fc7ac223000-7fc7ac22a000 r--s 00000000 fe:00 325745                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
7fc7ac22d000-7fc7ac231000 r--p 00000000 00:00 0                          [vvar]
7fc7ac231000-7fc7ac233000 r--p 00000000 00:00 0                          [vvar_vclock]
7fc7ac233000-7fc7ac235000 r-xp 00000000 00:00 0                          [vdso]
7ffd3d773000-7ffd3d794000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

#[test]
fn parses_real_lines() {
    let entries = parse_maps(REAL).unwrap();
    assert_eq!(entries.len(), 10);
    let cat = &entries[1];
    assert_eq!((cat.start, cat.end), (0x556a193f8000, 0x556a193fd000));
    assert_eq!(cat.perms.to_string(), "r-xp");
    assert_eq!(cat.offset, 0x2000);
    assert_eq!((cat.dev_major, cat.dev_minor, cat.inode), (0xfe, 0, 247030));
    assert_eq!(cat.path, "/usr/bin/cat");
    assert_eq!(entries[3].path, "");
    assert!(entries[4].perms.shared);
    assert_eq!(entries[6].path, "[vvar_vclock]");
    assert_eq!(entries[9].start, 0xffffffffff600000);
    assert_eq!(entries[9].path, "[vsyscall]");
}

#[test]
fn display_round_trips_real_lines() {
    for (line, entry) in REAL.lines().zip(parse_maps(REAL).unwrap()) {
        assert_eq!(entry.to_string(), line);
    }
}

#[test]
fn path_with_spaces_is_verbatim() {
    let line = "7f0000000000-7f0000001000 rw-s 00001000 00:05 42                         /tmp/a b (deleted)";
    let entry = parse_line(line).unwrap();
    assert_eq!(entry.path, "/tmp/a b (deleted)");
    let trailing = parse_line("1000-2000 r--p 00000000 00:05 42    /x  ").unwrap();
    assert_eq!(trailing.path, "/x  ");
    let bare = parse_line("1000-2000 ---p 00000000 00:00 0").unwrap();
    assert_eq!(bare.path, "");
}

#[test]
fn to_region_classifies_names() {
    let entry = |path: &str| MapsEntry {
        start: 0x1000,
        end: 0x3000,
        perms: Perms::parse("rw-p").unwrap(),
        offset: 0x5000,
        dev_major: 8,
        dev_minor: 1,
        inode: 7,
        path: path.into(),
    };
    assert_eq!(entry("").to_region().backing, Backing::anonymous());
    assert_eq!(entry("[heap]").to_region().backing, Backing::anonymous());
    let stack = entry("[stack]").to_region();
    assert_eq!(stack.backing, Backing::anonymous());
    assert!(stack.grows_down);
    assert_eq!(
        entry("[anon:my pool]").to_region().backing,
        Backing::Anonymous {
            name: Some("my pool".into())
        }
    );
    for special in [
        "[vdso]",
        "[vvar]",
        "[vvar_vclock]",
        "[vsyscall]",
        "[anon_shmem:x]",
        "[uprobes]",
    ] {
        assert_eq!(
            entry(special).to_region().backing,
            Backing::Special {
                name: special.into()
            }
        );
    }
    let file = entry("/tmp/a b (deleted)").to_region();
    assert_eq!(
        file.backing,
        Backing::File {
            path: "/tmp/a b (deleted)".into(),
            dev_major: 8,
            dev_minor: 1,
            inode: 7
        }
    );
    assert_eq!(file.offset, 0x5000);
    assert_eq!(entry("").to_region().offset, 0);
}

#[test]
fn malformed_lines_name_line_and_problem() {
    let cases = [
        (
            "1000-2000 rwzp 00000000 00:00 0",
            "bad permissions field \"rwzp\"",
        ),
        (
            "1000 r--p 00000000 00:00 0",
            "bad address range field \"1000\"",
        ),
        (
            "1000-g000 r--p 00000000 00:00 0",
            "bad end address field \"g000\"",
        ),
        (
            "2000-1000 r--p 00000000 00:00 0",
            "empty range 0x2000-0x1000",
        ),
        (
            "1000-2000 r--p 00000000 0000 0",
            "bad device field \"0000\"",
        ),
        ("1000-2000 r--p 00000000 00:00", "missing inode field"),
        ("1000-2000 r--p 00000000 00:00 x1", "bad inode field \"x1\""),
        (
            "1000-2000  r--p 00000000 00:00 0",
            "missing permissions field",
        ),
        (
            "1000-2000 r--p +0000000 00:00 0",
            "bad offset field \"+0000000\"",
        ),
        (
            "11112222333344445-2000 r--p 0 00:00 0",
            "bad start address field",
        ),
        ("", "empty line"),
    ];
    for (line, want) in cases {
        let text = format!("1000-2000 r--p 00000000 00:00 0 \n{line}\n");
        let err = parse_maps(&text).unwrap_err();
        assert_eq!(err.line, 2, "{line}");
        let msg = err.to_string();
        assert!(msg.starts_with("/proc maps line 2: "), "{msg}");
        assert!(msg.contains(want), "{line:?}: {msg}");
    }
}

#[test]
fn empty_input_is_empty_map() {
    assert_eq!(parse_maps("").unwrap(), vec![]);
    assert!(parse_maps("\n").is_err());
}

proptest! {
    #[test]
    fn never_panics(text in "\\PC*") {
        let _ = parse_maps(&text);
    }

    #[test]
    fn never_panics_on_near_misses(text in "[0-9a-f]{1,17}-[0-9a-f]{1,17} [rwxps-]{3,5} [0-9a-fA-F+]{1,9} [0-9a-f:]{1,6} [0-9]{0,21} {0,40}[ -~]{0,20}\n?") {
        let _ = parse_maps(&text);
    }

    #[test]
    fn display_then_parse_round_trips(
        start in 0u64..1 << 47,
        len in 1u64..1 << 30,
        perms in "[r-][w-][x-][ps]",
        offset: u64,
        major in 0u32..0x1000,
        minor in 0u32..0x100000,
        inode: u64,
        path in "|\\[[a-z_:]{1,12}\\]|/[ -~]{0,30}",
    ) {
        let entry = MapsEntry {
            start,
            end: start + len,
            perms: Perms::parse(&perms).unwrap(),
            offset,
            dev_major: major,
            dev_minor: minor,
            inode,
            path,
        };
        prop_assert_eq!(parse_line(&entry.to_string()).unwrap(), entry);
    }
}

// ---- fuzzing: `cargo xtask fuzz` runs these with many more cases ----------

/// A plausible maps line: what the kernel prints, with the odd corner
/// (huge addresses, `(deleted)`, spaces and brackets in paths).
fn entry_strategy() -> impl Strategy<Value = MapsEntry> {
    (
        0u64..u64::MAX / 2,
        1u64..1 << 40,
        "[r-][w-][x-][ps]",
        any::<u64>(),
        (0u32..0x1000, 0u32..0x100000, any::<u64>()),
        "|\\[(heap|stack|vdso|vvar|vsyscall|anon:[ -~]{0,20})\\]|/[ -~]{0,40}( \\(deleted\\))?",
    )
        .prop_map(
            |(start, len, perms, offset, (dev_major, dev_minor, inode), path)| MapsEntry {
                start,
                end: start + len,
                perms: Perms::parse(&perms).unwrap(),
                offset,
                dev_major,
                dev_minor,
                inode,
                path,
            },
        )
}

/// One edit of a maps file's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    Truncate(usize),
    Splice(usize, &'static str),
    DuplicateLine(usize),
}

/// Tokens that sit on the parser's edges.
const TOKENS: &[&str] = &[
    "-",
    " ",
    "  ",
    "\n",
    "\n\n",
    ":",
    "0",
    "ffffffffffffffff",
    "10000000000000000",
    "+1",
    "0x",
    "rwxp",
    "rw-s",
    "----",
    "rwxpq",
    "(deleted)",
    "[heap]",
    "[stack]",
    "[anon:",
    "]",
    "\t",
    "\r",
    "\0",
    "\u{fffd}",
    "é",
    "/",
    "99999999999999999999999",
];

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), proptest::sample::select(TOKENS))
            .prop_map(|(i, t)| Mutation::Splice(i, t)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let n = bytes.len() + 1;
        match *m {
            Mutation::Insert(i, b) => bytes.insert(i % n, b),
            Mutation::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % bytes.len());
            }
            Mutation::Replace(i, b) if !bytes.is_empty() => {
                let len = bytes.len();
                bytes[i % len] = b;
            }
            Mutation::Truncate(i) => bytes.truncate(i % n),
            Mutation::Splice(i, t) => {
                let at = i % n;
                bytes.splice(at..at, t.bytes());
            }
            Mutation::DuplicateLine(i) => {
                let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                let line = lines[i % lines.len()].to_vec();
                bytes.extend_from_slice(&line);
                bytes.push(b'\n');
            }
            _ => {}
        }
    }
    // The daemon reads maps the same way: bytes, then lossy UTF-8.
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Everything the daemon does with a maps file it read: parse, build a
/// model as the seeder does, compare. Nothing may panic, what parses must
/// print back to itself, and errors stay small.
fn exercise(text: &str) -> Result<(), TestCaseError> {
    match parse_maps(text) {
        Ok(entries) => {
            let mut space = crate::model::AddressSpace::new();
            for entry in &entries {
                prop_assert!(entry.start < entry.end);
                prop_assert_eq!(&parse_line(&entry.to_string()).unwrap(), entry);
                let _ = (entry.len(), entry.backing());
                space.map_region(entry.to_region());
            }
            let _ = crate::model::compare::compare(&space, &entries);
        }
        Err(err) => prop_assert!(err.text.chars().count() <= 200),
    }
    Ok(())
}

proptest! {
    #[test]
    fn fuzz_mutated_maps_text(
        entries in proptest::collection::vec(entry_strategy(), 0..12),
        mutations in proptest::collection::vec(mutation_strategy(), 0..8),
    ) {
        let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
        exercise(&text)?;
        exercise(&mutate(&text, &mutations))?;
    }

    #[test]
    fn fuzz_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&String::from_utf8_lossy(&bytes))?;
    }
}
