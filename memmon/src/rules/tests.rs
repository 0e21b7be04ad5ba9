use super::*;
use crate::elf::{ElfInfo, ElfType};
use crate::model::{Perms, Region};

fn exe(elf_type: ElfType, is_pie: bool) -> ElfInfo {
    ElfInfo {
        elf_type,
        is_64bit: true,
        machine: 62,
        is_pie,
        entry: 0x1040,
        interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
        program_headers: Vec::new(),
        sections: Vec::new(),
        relro: None,
        stack_executable: Some(false),
        section_index: Default::default(),
    }
}

#[test]
fn aslr_verdict_table() {
    let pie = exe(ElfType::Dyn, true);
    let fixed = exe(ElfType::Exec, false);
    let cases: &[(u8, u32, Option<&ElfInfo>, AslrStatus, &str)] = &[
        (2, 0, Some(&pie), AslrStatus::Full, "PIE"),
        (2, 0, None, AslrStatus::Full, "unknown"),
        (2, 0, Some(&fixed), AslrStatus::Partial, "not PIE (ET_EXEC)"),
        (
            1,
            0,
            Some(&pie),
            AslrStatus::Partial,
            "brk heap not randomized",
        ),
        (1, 0, Some(&fixed), AslrStatus::Partial, "fixed addresses"),
        (
            0,
            0,
            Some(&pie),
            AslrStatus::Off,
            "kernel.randomize_va_space=0",
        ),
        (
            2,
            ADDR_NO_RANDOMIZE,
            Some(&pie),
            AslrStatus::Off,
            "setarch -R",
        ),
        (2, 0x0040008, Some(&pie), AslrStatus::Off, "gdb"),
        (
            1,
            ADDR_NO_RANDOMIZE,
            Some(&fixed),
            AslrStatus::Off,
            "ET_EXEC",
        ),
        (
            2,
            0x0400000,
            Some(&pie),
            AslrStatus::Full,
            "randomize_va_space=2",
        ),
    ];
    for &(rvs, pers, info, status, needle) in cases {
        let v = aslr_verdict(&RandomizeVaSpace::Value(rvs), pers, info);
        assert_eq!(v.status, status, "{rvs} {pers:#x}: {v:?}");
        assert!(
            v.reasons.iter().any(|r| r.contains(needle)),
            "{rvs} {pers:#x}: {needle:?} not in {:?}",
            v.reasons
        );
    }
    // Every reason that holds is listed, not just the worst.
    let v = aslr_verdict(&RandomizeVaSpace::Value(1), ADDR_NO_RANDOMIZE, Some(&fixed));
    assert_eq!(v.reasons.len(), 3);
}

#[test]
fn an_unreadable_sysctl_is_unknown_not_full() {
    let dir = crate::testutil::scratch_dir();
    let missing = dir.join("randomize_va_space");
    let unknown = RandomizeVaSpace::read(&missing);
    let RandomizeVaSpace::Unknown(why) = &unknown else {
        panic!("a missing sysctl read as {unknown:?}");
    };
    assert!(why.contains("randomize_va_space"), "{why}");
    let pie = exe(ElfType::Dyn, true);
    let v = aslr_verdict(&unknown, 0, Some(&pie));
    assert_eq!(v.status, AslrStatus::Unknown, "{v:?}");
    assert!(
        v.reasons
            .iter()
            .any(|r| r.contains("unknown") && r.contains(why)),
        "the reason is given: {v:?}"
    );
    assert!(v.codes.is_empty(), "unknown is not weakened: {v:?}");
    let json = serde_json::to_string(&v).unwrap();
    assert!(json.contains(r#""status":"unknown""#), "{json}");
    // Only a certain "off" outranks it; a non-PIE executable does not.
    let fixed = exe(ElfType::Exec, false);
    assert_eq!(
        aslr_verdict(&unknown, 0, Some(&fixed)).status,
        AslrStatus::Unknown
    );
    assert_eq!(
        aslr_verdict(&unknown, ADDR_NO_RANDOMIZE, Some(&pie)).status,
        AslrStatus::Off
    );
    // Garbage is unknown too; a readable value is known.
    std::fs::write(&missing, "two\n").unwrap();
    assert!(matches!(
        RandomizeVaSpace::read(&missing),
        RandomizeVaSpace::Unknown(why) if why.contains("two")
    ));
    std::fs::write(&missing, "1\n").unwrap();
    assert_eq!(RandomizeVaSpace::read(&missing), RandomizeVaSpace::Value(1));
    for status in AslrStatus::ALL {
        let json = serde_json::to_value(status).unwrap();
        assert_eq!(json, status.label(), "label and serde agree");
    }
}

#[test]
fn aslr_serializes_lowercase() {
    let v = aslr_verdict(&RandomizeVaSpace::Value(0), 0, None);
    let json = serde_json::to_string(&v).unwrap();
    assert!(json.contains(r#""status":"off""#), "{json}");
}

#[test]
fn readers_on_this_process() {
    let rvs = read_randomize_va_space(Path::new(RANDOMIZE_VA_SPACE)).unwrap();
    assert!(rvs <= 2);
    let pers = read_personality(std::process::id()).unwrap();
    // Whatever it is, it parses; ADDR_NO_RANDOMIZE may be set under gdb.
    let _ = pers & ADDR_NO_RANDOMIZE;
    assert!(read_personality(u32::MAX).is_err());
}

fn region(start: u64, end: u64, perms: &str, backing: Backing) -> Region {
    Region::new(start, end, Perms::parse(perms).unwrap(), 0, backing)
}

#[test]
fn wx_findings_flag_wx_and_anonymous_exec_only() {
    let file = |p: &str| Backing::File {
        path: p.into(),
        dev_major: 8,
        dev_minor: 1,
        inode: 42,
    };
    let special = |n: &str| Backing::Special { name: n.into() };
    let space = AddressSpace::from_regions([
        region(0x400000, 0x401000, "r-xp", file("/bin/app")),
        region(0x600000, 0x601000, "rwxp", file("/bin/app")),
        region(
            0x7f00_0000_0000,
            0x7f00_0001_0000,
            "r-xp",
            Backing::anonymous(),
        ),
        region(
            0x7f00_0002_0000,
            0x7f00_0003_0000,
            "rwxp",
            Backing::anonymous(),
        ),
        region(
            0x7f00_0004_0000,
            0x7f00_0005_0000,
            "rw-p",
            Backing::anonymous(),
        ),
        region(
            0x7fff_f7fc_1000,
            0x7fff_f7fc_3000,
            "r-xp",
            special("[vdso]"),
        ),
        region(
            0xffff_ffff_ff60_0000,
            0xffff_ffff_ff60_1000,
            "--xp",
            special("[vsyscall]"),
        ),
    ]);
    let found = wx_findings(&space);
    let summary: Vec<(u64, &str, WxReason)> = found
        .iter()
        .map(|f| (f.start, f.perms.as_str(), f.reason))
        .collect();
    assert_eq!(
        summary,
        [
            (0x600000, "rwxp", WxReason::WritableExecutable),
            (0x7f00_0000_0000, "r-xp", WxReason::ExecutableAnonymous),
            (0x7f00_0002_0000, "rwxp", WxReason::WritableExecutable),
        ]
    );
    assert_eq!(found[0].path, "/bin/app");
    let json = serde_json::to_string(&found[1]).unwrap();
    assert!(json.contains("executable-anonymous"), "{json}");
}
