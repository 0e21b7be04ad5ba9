use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::testutil::{compile_c, mapped_library, scratch_dir};

const HELLO: &str = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n";
const BIG_BSS: &str = "static char big[1 << 20];\n\
    int main(int c, char **v) { big[c] = 1; return big[(unsigned char)v[0][0]]; }\n";

fn load_with(info: &ElfInfo, section: &str) -> Option<ProgramHeader> {
    info.loads()
        .find(|(_, ph)| ph.sections.iter().any(|s| s == section))
        .map(|(_, ph)| ph.clone())
}

#[test]
fn pie_executable() {
    let Some(exe) = compile_c("pie", HELLO, &["-fPIE", "-pie"]) else {
        return;
    };
    let info = read_elf(&exe).unwrap();
    assert_eq!(info.elf_type, ElfType::Dyn);
    assert!(info.is_pie);
    assert!(info.interpreter.as_deref().unwrap().contains("ld"));
    assert!(info.entry != 0);
    let text = load_with(&info, ".text").unwrap();
    assert!(text.flags.read && text.flags.exec && !text.flags.write);
    assert_eq!(text.flags.to_string(), "R E");
    let bss = load_with(&info, ".bss").unwrap();
    assert!(bss.flags.read && bss.flags.write && !bss.flags.exec);
    assert!(bss.sections.iter().any(|s| s == ".data"));
    let relro = info.relro.unwrap();
    assert!(relro.start >= bss.vaddr && relro.end <= bss.vaddr + bss.memsz);
    assert_eq!(info.stack_executable, Some(false));
    assert!(info.program_headers.iter().any(|p| p.kind == "GNU_STACK"));
    assert!(
        info.sections
            .iter()
            .any(|s| s.name == ".text" && s.flags.exec)
    );
}

#[test]
fn non_pie_executable() {
    let Some(exe) = compile_c("nopie", HELLO, &["-fno-pie", "-no-pie"]) else {
        return;
    };
    let info = read_elf(&exe).unwrap();
    assert_eq!(info.elf_type, ElfType::Exec);
    assert!(!info.is_pie);
    assert!(info.interpreter.is_some());
    let (_, first) = info.loads().next().unwrap();
    if cfg!(target_arch = "x86_64") {
        assert_eq!(first.vaddr, 0x400000);
    }
    let text = load_with(&info, ".text").unwrap();
    assert!(info.entry >= text.vaddr && info.entry < text.vaddr + text.memsz);
}

#[test]
fn big_bss_is_memsz_beyond_filesz() {
    let Some(exe) = compile_c("bigbss", BIG_BSS, &[]) else {
        return;
    };
    let info = read_elf(&exe).unwrap();
    let rw = load_with(&info, ".bss").unwrap();
    assert!(rw.memsz - rw.filesz >= 1 << 20);
    let bss = info.sections.iter().find(|s| s.name == ".bss").unwrap();
    assert!(bss.is_nobits() && bss.size >= 1 << 20);
}

#[test]
fn shared_library_is_not_pie() {
    let Some(libc) = mapped_library("libc.so.6") else {
        return;
    };
    let info = read_elf(Path::new(&libc)).unwrap();
    assert_eq!(info.elf_type, ElfType::Dyn);
    assert!(!info.is_pie);
    assert!(load_with(&info, ".text").is_some());
}

/// `readelf -l empty` and its live mappings from the seed document.
pub(crate) fn seed_empty() -> ElfInfo {
    let load = |offset, vaddr, filesz, memsz, flags: &str, sections: &[&str]| ProgramHeader {
        kind: "LOAD".into(),
        p_type: 1,
        offset,
        vaddr,
        filesz,
        memsz,
        flags: SegmentFlags {
            read: flags.contains('R'),
            write: flags.contains('W'),
            exec: flags.contains('E'),
        },
        align: 0x1000,
        sections: sections.iter().map(|s| s.to_string()).collect(),
    };
    ElfInfo {
        elf_type: ElfType::Dyn,
        is_64bit: true,
        machine: 62,
        is_pie: true,
        entry: 0x1040,
        interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
        program_headers: vec![
            load(0, 0, 0x5f0, 0x5f0, "R", &[".interp", ".dynsym"]),
            load(0x1000, 0x1000, 0x145, 0x145, "RE", &[".init", ".text"]),
            load(0x2000, 0x2000, 0xc4, 0xc4, "R", &[".rodata", ".eh_frame"]),
            load(
                0x2df0,
                0x3df0,
                0x220,
                0x228,
                "RW",
                &[".init_array", ".dynamic", ".got", ".data", ".bss"],
            ),
        ],
        sections: Vec::new(),
        relro: Some(VaddrRange {
            start: 0x3df0,
            end: 0x4000,
        }),
        stack_executable: Some(false),
    }
}

#[test]
fn load_bias_from_seed_mappings() {
    let maps = [
        (0x555555554000, 0),
        (0x555555555000, 0x1000),
        (0x555555556000, 0x2000),
        (0x555555557000, 0x2000),
        (0x555555558000, 0x3000),
    ];
    assert_eq!(load_bias(&seed_empty(), &maps), Some(0x555555554000));
    // Only the ambiguous shared page: still resolved by the RELRO split page.
    assert_eq!(load_bias(&seed_empty(), &maps[3..]), Some(0x555555554000));
    assert_eq!(load_bias(&seed_empty(), &[]), None);
    assert_eq!(load_bias(&seed_empty(), &[(0x1000, 0x9000)]), None);
}

#[test]
fn non_pie_bias_is_zero() {
    let Some(exe) = compile_c("nopie2", HELLO, &["-fno-pie", "-no-pie"]) else {
        return;
    };
    let info = read_elf(&exe).unwrap();
    let maps: Vec<(u64, u64)> = info
        .loads()
        .map(|(_, ph)| (ph.vaddr & !0xfff, ph.offset & !0xfff))
        .collect();
    assert_eq!(load_bias(&info, &maps), Some(0));
}

#[test]
fn read_errors_are_classified() {
    let dir = scratch_dir();
    let missing = dir.join("nope");
    assert!(matches!(read_elf(&missing), Err(ElfError::NotFound(_))));
    let deleted = dir.join("libgone.so (deleted)");
    assert!(matches!(read_elf(&deleted), Err(ElfError::Deleted(_))));
    assert!(matches!(read_elf(&dir), Err(ElfError::NotRegularFile(_))));
    assert!(matches!(
        read_elf(Path::new("/dev/null")),
        Err(ElfError::NotRegularFile(_))
    ));
    let text = dir.join("text");
    std::fs::write(&text, "hello, not an ELF").unwrap();
    assert!(matches!(read_elf(&text), Err(ElfError::NotElf)));
    assert!(matches!(parse_elf(b"\x7fELF"), Err(ElfError::NotElf)));
}

fn sample_elf() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        ["/bin/true", "/usr/bin/true"]
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .expect("a real ELF at /bin/true")
    })
}

#[test]
fn sample_parses() {
    let info = parse_elf(sample_elf()).unwrap();
    assert!(info.loads().count() >= 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..4096),
                                elf_magic in any::<bool>()) {
        if elf_magic && bytes.len() >= 6 {
            bytes[..4].copy_from_slice(b"\x7fELF");
            bytes[4] = 2;
            bytes[5] = 1;
        }
        let _ = parse_elf(&bytes);
    }

    #[test]
    fn truncated_never_panics(len in 0usize..65536) {
        let bytes = sample_elf();
        let _ = parse_elf(&bytes[..len.min(bytes.len())]);
    }

    #[test]
    fn bit_flips_never_panic(flips in proptest::collection::vec((0usize..8192, 0u8..8), 1..16),
                             tail in any::<bool>()) {
        let mut bytes = sample_elf().to_vec();
        let n = bytes.len();
        for (pos, bit) in flips {
            // Headers sit at the start (ELF header, phdrs) and the end (shdrs).
            let i = if tail { n - 1 - pos % n } else { pos % n };
            bytes[i] ^= 1 << bit;
        }
        let _ = parse_elf(&bytes);
    }
}

/// readelf -lW's "Section to Segment mapping", one list per segment.
fn readelf_mapping(path: &Path) -> Option<Vec<Vec<String>>> {
    let out = std::process::Command::new("readelf")
        .args(["-lW"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (_, mapping) = text.split_once("Segment Sections...")?;
    Some(
        mapping
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().skip(1).map(String::from).collect())
            .collect(),
    )
}

#[test]
fn section_mapping_matches_readelf() {
    let mut paths: Vec<std::path::PathBuf> = vec!["/bin/true".into()];
    paths.extend(mapped_library("libc.so.6").map(Into::into));
    paths.extend(compile_c("bigbss2", BIG_BSS, &[]));
    paths.extend(compile_c("nopie3", HELLO, &["-fno-pie", "-no-pie"]));
    for path in paths {
        let Some(expected) = readelf_mapping(&path) else {
            eprintln!("skipping: no readelf");
            return;
        };
        let info = read_elf(&path).unwrap();
        let got: Vec<Vec<String>> = info
            .program_headers
            .iter()
            .map(|p| p.sections.clone())
            .collect();
        assert_eq!(got, expected, "{}", path.display());
    }
}
