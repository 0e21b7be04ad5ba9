//! ELF headers of the seed documents' programs, as readelf shows them.

use crate::elf::{
    ElfInfo, ElfType, ProgramHeader, Section, SectionFlags, SegmentFlags, VaddrRange,
};

/// `(offset, vaddr, filesz, memsz, "RWE")`
type Load = (u64, u64, u64, u64, &'static str);
/// `(name, addr, size, "awxn")`: alloc, write, exec, nobits.
type Sec = (&'static str, u64, u64, &'static str);

fn build(
    elf_type: ElfType,
    is_pie: bool,
    loads: &[Load],
    secs: &[Sec],
    relro: (u64, u64),
) -> ElfInfo {
    let sections: Vec<Section> = secs
        .iter()
        .map(|&(name, addr, size, f)| Section {
            name: name.into(),
            sh_type: if f.contains('n') {
                Section::SHT_NOBITS
            } else {
                1
            },
            addr,
            size,
            offset: addr,
            flags: SectionFlags {
                alloc: f.contains('a'),
                write: f.contains('w'),
                exec: f.contains('x'),
                tls: false,
            },
        })
        .collect();
    let program_headers = loads
        .iter()
        .map(|&(offset, vaddr, filesz, memsz, f)| ProgramHeader {
            kind: "LOAD".into(),
            p_type: ProgramHeader::PT_LOAD,
            offset,
            vaddr,
            filesz,
            memsz,
            flags: SegmentFlags {
                read: f.contains('R'),
                write: f.contains('W'),
                exec: f.contains('E'),
            },
            align: 0x1000,
            sections: sections
                .iter()
                .filter(|s| s.addr >= vaddr && s.addr + s.size <= vaddr + memsz)
                .map(|s| s.name.clone())
                .collect(),
        })
        .collect();
    ElfInfo {
        elf_type,
        is_64bit: true,
        machine: 62,
        is_pie,
        entry: loads[1].1 + 0x40,
        interpreter: is_pie.then(|| "/lib64/ld-linux-x86-64.so.2".into()),
        program_headers,
        sections,
        relro: Some(VaddrRange {
            start: relro.0,
            end: relro.1,
        }),
        stack_executable: Some(false),
        section_index: Default::default(),
    }
    .indexed()
}

/// The PIE `empty` of the "How are Linux processes loaded" seed.
pub fn empty_pie() -> ElfInfo {
    build(
        ElfType::Dyn,
        true,
        &[
            (0, 0, 0x5f0, 0x5f0, "R"),
            (0x1000, 0x1000, 0x145, 0x145, "RE"),
            (0x2000, 0x2000, 0xc4, 0xc4, "R"),
            (0x2df0, 0x3df0, 0x220, 0x228, "RW"),
        ],
        &[
            (".interp", 0x318, 0x1c, "a"),
            (".dynsym", 0x3d8, 0x90, "a"),
            (".rela.dyn", 0x530, 0xc0, "a"),
            (".init", 0x1000, 0x1b, "ax"),
            (".plt", 0x1020, 0x20, "ax"),
            (".text", 0x1040, 0x100, "ax"),
            (".fini", 0x1140, 0x5, "ax"),
            (".rodata", 0x2000, 0x4, "a"),
            (".eh_frame_hdr", 0x2004, 0x2c, "a"),
            (".eh_frame", 0x2030, 0x94, "a"),
            (".init_array", 0x3df0, 0x8, "aw"),
            (".fini_array", 0x3df8, 0x8, "aw"),
            (".dynamic", 0x3e00, 0x1c0, "aw"),
            (".got", 0x3fc0, 0x40, "aw"),
            (".data", 0x4000, 0x10, "aw"),
            (".bss", 0x4010, 0x8, "awn"),
            (".comment", 0, 0x2b, ""),
        ],
        (0x3df0, 0x4000),
    )
}

/// A glibc 2.35 libc.so.6 shaped like the seed's mappings (bias
/// 0x7ffff7d7a000): its .bss spills into an anonymous mapping.
pub fn libc_235() -> ElfInfo {
    build(
        ElfType::Dyn,
        false,
        &[
            (0, 0, 0x27f00, 0x27f00, "R"),
            (0x28000, 0x28000, 0x195000, 0x195000, "RE"),
            (0x1bd000, 0x1bd000, 0x57000, 0x57000, "R"),
            (0x214790, 0x215790, 0x5850, 0x12460, "RW"),
        ],
        &[
            (".dynsym", 0x3d00, 0x9000, "a"),
            (".text", 0x28700, 0x194000, "ax"),
            (".rodata", 0x1bd000, 0x40000, "a"),
            (".eh_frame", 0x1fd000, 0x16000, "a"),
            (".data.rel.ro", 0x215790, 0x2700, "aw"),
            (".got", 0x218000, 0xe80, "aw"),
            (".got.plt", 0x218e80, 0x100, "aw"),
            (".data", 0x219000, 0x1fe0, "aw"),
            (".bss", 0x21afe0, 0xcc10, "awn"),
        ],
        (0x215790, 0x219000),
    )
}

/// The non-PIE `test` of the "Memory Layout of Linux Executables" seed,
/// linked at 0x400000.
pub fn test_non_pie() -> ElfInfo {
    build(
        ElfType::Exec,
        false,
        &[
            (0, 0x400000, 0x7ac, 0x7ac, "RE"),
            (0xe10, 0x600e10, 0x238, 0x240, "RW"),
        ],
        &[
            (".interp", 0x400238, 0x1c, "a"),
            (".text", 0x400490, 0x1f2, "ax"),
            (".rodata", 0x400690, 0x40, "a"),
            (".init_array", 0x600e10, 0x8, "aw"),
            (".dynamic", 0x600e28, 0x1d0, "aw"),
            (".got", 0x600ff8, 0x8, "aw"),
            (".got.plt", 0x601000, 0x38, "aw"),
            (".data", 0x601038, 0x10, "aw"),
            (".bss", 0x601048, 0x8, "awn"),
        ],
        (0x600e10, 0x601000),
    )
}

/// glibc 2.19's libc, mapped with the old 2 MiB `---p` hole between its
/// text and data (bias 0x7f3b113ce000).
pub fn libc_219() -> ElfInfo {
    build(
        ElfType::Dyn,
        false,
        &[
            (0, 0, 0x1bad70, 0x1bad70, "RE"),
            (0x1bb7a0, 0x3bb7a0, 0x5060, 0x9ac0, "RW"),
        ],
        &[
            (".text", 0x1f4a0, 0x15d000, "ax"),
            (".rodata", 0x17d000, 0x20000, "a"),
            (".data.rel.ro", 0x3bb7a0, 0x2800, "aw"),
            (".got", 0x3befa0, 0x60, "aw"),
            (".data", 0x3bf000, 0x1700, "aw"),
            (".bss", 0x3c0800, 0x4a60, "awn"),
        ],
        (0x3bb7a0, 0x3bf000),
    )
}
