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
