use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::testutil::{compile_c, mapped_library, scratch_dir};

const HELLO: &str = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n";
const BIG_BSS: &str = "static char big[1 << 20];\n\
    int main(int c, char **v) { big[c] = 1; return big[(unsigned char)v[0][0]]; }\n";

/// `compile_c` under the rule the integration tests follow: without `cc`
/// the test is skipped visibly, and under `CI=true` it fails instead.
fn compiled(name: &str, src: &str, args: &[&str]) -> Option<std::path::PathBuf> {
    let exe = compile_c(name, src, args);
    if exe.is_none() {
        memmon_testkit::skip("the ELF tests", "cannot run cc (install a C compiler)");
    }
    exe
}

fn load_with(info: &ElfInfo, section: &str) -> Option<ProgramHeader> {
    info.loads()
        .find(|(_, ph)| ph.sections.iter().any(|s| s == section))
        .map(|(_, ph)| ph.clone())
}

#[test]
fn pie_executable() {
    let Some(exe) = compiled("pie", HELLO, &["-fPIE", "-pie"]) else {
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
    let Some(exe) = compiled("nopie", HELLO, &["-fno-pie", "-no-pie"]) else {
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
    let Some(exe) = compiled("bigbss", BIG_BSS, &[]) else {
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
        section_index: Default::default(),
    }
    .indexed()
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
    let Some(exe) = compiled("nopie2", HELLO, &["-fno-pie", "-no-pie"]) else {
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
    // The default config: 256 cases, or PROPTEST_CASES (`cargo xtask fuzz`).
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
    paths.extend(compiled("bigbss2", BIG_BSS, &[]));
    paths.extend(compiled("nopie3", HELLO, &["-fno-pie", "-no-pie"]));
    for path in paths {
        let Some(expected) = readelf_mapping(&path) else {
            memmon_testkit::skip("the readelf comparison", "no readelf (install binutils)");
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

/// A little-endian ELF64 header followed by `phnum` zeroed program
/// headers and `shnum` section headers, each of `sh_flags` SHF_ALLOC.
fn synthetic_elf(phnum: u16, shnum: u16) -> Vec<u8> {
    let phoff = 64u64;
    let shoff = phoff + 56 * u64::from(phnum);
    let mut b = vec![0u8; shoff as usize + 64 * usize::from(shnum)];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // ELFCLASS64
    b[5] = 1; // little endian
    b[6] = 1; // EV_CURRENT
    b[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    b[32..40].copy_from_slice(&phoff.to_le_bytes());
    b[40..48].copy_from_slice(&(if shnum > 0 { shoff } else { 0 }).to_le_bytes());
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&phnum.to_le_bytes());
    b[58..60].copy_from_slice(&64u16.to_le_bytes());
    b[60..62].copy_from_slice(&shnum.to_le_bytes());
    for i in 0..usize::from(phnum) {
        let ph = 64 + 56 * i;
        b[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        b[ph + 40..ph + 48].copy_from_slice(&u64::MAX.to_le_bytes()); // p_memsz
    }
    for i in 0..usize::from(shnum) {
        let sh = shoff as usize + 64 * i;
        b[sh + 8..sh + 16].copy_from_slice(&2u64.to_le_bytes()); // SHF_ALLOC
        b[sh + 4..sh + 8].copy_from_slice(&8u32.to_le_bytes()); // SHT_NOBITS
    }
    b
}

#[test]
fn lying_headers_give_errors() {
    assert!(parse_elf(&synthetic_elf(3, 2)).is_ok());
    assert!(matches!(
        parse_elf(&synthetic_elf(5000, 0)),
        Err(ElfError::TooMany(_))
    ));
    // Every section in every segment: bounded work and output.
    assert!(matches!(
        parse_elf(&synthetic_elf(4000, 2000)),
        Err(ElfError::TooMany(_))
    ));
    assert!(matches!(
        parse_elf(&synthetic_elf(300, 300)),
        Err(ElfError::TooMany(_))
    ));
    // Counts pointing past the end of the file.
    let mut b = synthetic_elf(3, 2);
    b[56..58].copy_from_slice(&0xfffeu16.to_le_bytes());
    assert!(matches!(parse_elf(&b), Err(ElfError::Malformed(_))));
    let mut b = synthetic_elf(3, 2);
    b[60..62].copy_from_slice(&0xfffeu16.to_le_bytes());
    assert!(matches!(parse_elf(&b), Err(ElfError::Malformed(_))));
    // Extended numbering (PN_XNUM) with a huge count in section 0.
    let mut b = synthetic_elf(3, 2);
    b[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
    let sh0 = 64 + 56 * 3;
    b[sh0 + 44..sh0 + 48].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(parse_elf(&b).is_err());
    // Huge offsets in the real header table of /bin/true.
    let mut b = sample_elf().to_vec();
    for off in [32, 40] {
        let mut c = b.clone();
        c[off..off + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_elf(&c).is_err());
    }
    b[62..64].copy_from_slice(&0xfff0u16.to_le_bytes()); // bad e_shstrndx
    let info = parse_elf(&b).unwrap();
    assert!(info.sections.iter().all(|s| s.name.is_empty()));
}

// ---- fuzzing: `cargo xtask fuzz` runs these with many more cases ----------

/// Where a hostile value goes: an ELF header field, or a field of the
/// n-th program or section header, as (offset, width).
const EHDR_FIELDS: &[(usize, usize)] = &[
    (16, 2), // e_type
    (24, 8), // e_entry
    (32, 8), // e_phoff
    (40, 8), // e_shoff
    (52, 2), // e_ehsize
    (54, 2), // e_phentsize
    (56, 2), // e_phnum
    (58, 2), // e_shentsize
    (60, 2), // e_shnum
    (62, 2), // e_shstrndx
];
/// p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align.
const PHDR_FIELDS: &[(usize, usize)] = &[
    (0, 4),
    (4, 4),
    (8, 8),
    (16, 8),
    (24, 8),
    (32, 8),
    (40, 8),
    (48, 8),
];
/// sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_entsize.
const SHDR_FIELDS: &[(usize, usize)] = &[
    (0, 4),
    (4, 4),
    (8, 8),
    (16, 8),
    (24, 8),
    (32, 8),
    (40, 4),
    (44, 4),
    (56, 8),
];

fn hostile_value(len: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(u64::from(u16::MAX)),
        Just(len),
        Just(len.saturating_sub(1)),
        (0..len.max(1)),
        (0u64..8).prop_map(|s| 1 << (s * 8 + 7)),
    ]
}

fn le_u64(bytes: &[u8], at: usize, width: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf[..width].copy_from_slice(&bytes[at..at + width]);
    u64::from_le_bytes(buf)
}

proptest! {
    /// Header fields set to lies (counts, offsets and sizes pointing past
    /// the end, wrapping, huge): an error or a bounded answer, never a
    /// panic, and never output sized by a lie.
    #[test]
    fn fuzz_lying_header_fields(
        synthetic in proptest::option::of((0u16..8, 0u16..8)),
        edits in proptest::collection::vec((0u8..3, any::<usize>(), any::<usize>(), hostile_value(1 << 16)), 1..6),
    ) {
        let mut bytes = match synthetic {
            Some((phnum, shnum)) => synthetic_elf(phnum, shnum),
            None => sample_elf().to_vec(),
        };
        let n = bytes.len() as u64;
        for (table, index, field, value) in edits {
            let value = if value == 1 << 16 { n } else { value };
            let (at, width) = match table {
                0 => EHDR_FIELDS[field % EHDR_FIELDS.len()],
                1 => {
                    let (phoff, phnum) = (le_u64(&bytes, 32, 8), le_u64(&bytes, 56, 2));
                    let (off, width) = PHDR_FIELDS[field % PHDR_FIELDS.len()];
                    let at = phoff.saturating_add(56 * (index as u64 % phnum.max(1)) + off as u64);
                    (usize::try_from(at).unwrap_or(usize::MAX), width)
                }
                _ => {
                    let (shoff, shnum) = (le_u64(&bytes, 40, 8), le_u64(&bytes, 60, 2));
                    let (off, width) = SHDR_FIELDS[field % SHDR_FIELDS.len()];
                    let at = shoff.saturating_add(64 * (index as u64 % shnum.max(1)) + off as u64);
                    (usize::try_from(at).unwrap_or(usize::MAX), width)
                }
            };
            if at.checked_add(width).is_some_and(|end| end <= bytes.len()) {
                bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }
        if let Ok(info) = parse_elf(&bytes) {
            prop_assert!(info.program_headers.len() <= 4096);
            prop_assert!(info.sections.len() <= 1 << 16);
            let mapped: usize = info.program_headers.iter().map(|p| p.sections.len()).sum();
            prop_assert!(mapped <= 1 << 16, "{} section-to-segment entries", mapped);
            prop_assert!(info.interpreter.as_ref().is_none_or(|i| i.len() <= 4096));
            let _ = info.loads().count();
        }
    }
}
