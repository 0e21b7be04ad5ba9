//! `parse_elf`: headers to `ElfInfo`, with every loop and allocation bounded.

use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _, SectionHeader as _};
use object::{Endianness, ReadRef};

use super::{
    ElfError, ElfInfo, ElfType, ProgramHeader, Section, SectionFlags, SegmentFlags, VaddrRange,
};

/// Real objects have a dozen or two program headers.
const MAX_PHDRS: usize = 4096;
/// Far above any loadable object (huge relocatable objects may exceed it).
const MAX_SECTIONS: usize = 1 << 16;
/// Section names are cosmetic: longer ones are cut.
const MAX_NAME: usize = 256;
/// PATH_MAX.
const MAX_INTERP: usize = 4096;
/// Segment x section comparisons for the section-to-segment mapping.
const MAX_MAPPING_WORK: usize = 1 << 22;
/// Section names stored across all segments' mappings.
const MAX_MAPPING_ENTRIES: usize = 1 << 16;
const MAX_DYNAMIC: usize = 1 << 16;

/// Parses the headers of an in-memory ELF file (32/64-bit, either endian).
pub fn parse_elf(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    parse_elf_from(bytes)
}

/// Parses the headers from any [`ReadRef`]: a byte slice, or a
/// `ReadCache` over a file, which reads only the parts the headers point
/// at (a 150 MiB shared object costs a few KiB, not 150 MiB).
pub fn parse_elf_from<'data, R: ReadRef<'data>>(data: R) -> Result<ElfInfo, ElfError> {
    let ident = data.read_bytes_at(0, 16).map_err(|_| ElfError::NotElf)?;
    if ident[..4] != elf::ELFMAG {
        return Err(ElfError::NotElf);
    }
    match ident[4] {
        1 => parse_as::<FileHeader32<Endianness>, R>(data),
        2 => parse_as::<FileHeader64<Endianness>, R>(data),
        _ => Err(ElfError::Malformed("unknown ELF class")),
    }
}

fn parse_as<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    data: R,
) -> Result<ElfInfo, ElfError> {
    use ElfError::Malformed;
    let header = Elf::parse(data).map_err(|_| Malformed("bad ELF header"))?;
    let endian = header
        .endian()
        .map_err(|_| Malformed("bad ELF data encoding"))?;
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|_| Malformed("program header table out of bounds"))?;
    if phdrs.len() > MAX_PHDRS {
        return Err(ElfError::TooMany("program headers"));
    }
    let shdrs = header
        .section_headers(endian, data)
        .map_err(|_| Malformed("section header table out of bounds"))?;
    if shdrs.len() > MAX_SECTIONS {
        return Err(ElfError::TooMany("sections"));
    }

    // Names are cosmetic: a broken string table leaves them empty.
    let shstrtab: &'data [u8] = if shdrs.is_empty() {
        &[]
    } else {
        header
            .shstrndx(endian, data)
            .ok()
            .and_then(|i| shdrs.get(i as usize))
            .and_then(|sh| sh.data(endian, data).ok())
            .unwrap_or(&[])
    };
    let sections: Vec<Section> = shdrs
        .iter()
        .map(|sh| {
            let flags = sh.sh_flags(endian).0;
            Section {
                name: c_str(shstrtab, sh.sh_name(endian) as usize, MAX_NAME),
                sh_type: sh.sh_type(endian).0,
                addr: sh.sh_addr(endian).into(),
                size: sh.sh_size(endian).into(),
                offset: sh.sh_offset(endian).into(),
                flags: SectionFlags {
                    alloc: flags & elf::SHF_ALLOC.0 != 0,
                    write: flags & elf::SHF_WRITE.0 != 0,
                    exec: flags & elf::SHF_EXECINSTR.0 != 0,
                    tls: flags & elf::SHF_TLS.0 != 0,
                },
            }
        })
        .collect();

    let mut program_headers: Vec<ProgramHeader> = phdrs
        .iter()
        .map(|ph| {
            let flags = ph.p_flags(endian).0;
            let p_type = ph.p_type(endian).0;
            ProgramHeader {
                kind: segment_kind(p_type),
                p_type,
                offset: ph.p_offset(endian).into(),
                vaddr: ph.p_vaddr(endian).into(),
                filesz: ph.p_filesz(endian).into(),
                memsz: ph.p_memsz(endian).into(),
                flags: SegmentFlags {
                    read: flags & elf::PF_R.0 != 0,
                    write: flags & elf::PF_W.0 != 0,
                    exec: flags & elf::PF_X.0 != 0,
                },
                align: ph.p_align(endian).into(),
                sections: Vec::new(),
            }
        })
        .collect();
    map_sections(&mut program_headers, &sections)?;

    let first = |t: elf::ProgramType| phdrs.iter().find(|ph| ph.p_type(endian) == t);
    let interpreter = match first(elf::PT_INTERP) {
        Some(ph) => {
            let bytes = ph
                .data(endian, data)
                .map_err(|_| Malformed("PT_INTERP out of bounds"))?;
            Some(c_str(bytes, 0, MAX_INTERP))
        }
        None => None,
    };
    let (flags_1, has_soname) = match first(elf::PT_DYNAMIC) {
        Some(ph) => {
            let entries = ph
                .dynamic(endian, data)
                .map_err(|_| Malformed("PT_DYNAMIC out of bounds"))?
                .unwrap_or(&[]);
            let mut flags_1 = 0u64;
            let mut has_soname = false;
            for d in entries.iter().take(MAX_DYNAMIC) {
                let tag = d.d_tag(endian);
                if tag == elf::DT_NULL {
                    break;
                } else if tag == elf::DT_FLAGS_1 {
                    flags_1 = d.d_val(endian).into();
                } else if tag == elf::DT_SONAME {
                    has_soname = true;
                }
            }
            (flags_1, has_soname)
        }
        None => (0, false),
    };

    let elf_type = match header.e_type(endian).0 {
        1 => ElfType::Rel,
        2 => ElfType::Exec,
        3 => ElfType::Dyn,
        4 => ElfType::Core,
        other => ElfType::Other(other),
    };
    // A library can carry PT_INTERP too (glibc's libc.so.6 runs standalone)
    // but has a DT_SONAME, which executables don't.
    let is_pie = elf_type == ElfType::Dyn
        && (flags_1 & elf::DF_1_PIE.0 != 0 || (interpreter.is_some() && !has_soname));
    let relro = first(elf::PT_GNU_RELRO).map(|ph| {
        let start: u64 = ph.p_vaddr(endian).into();
        VaddrRange {
            start,
            end: start.saturating_add(ph.p_memsz(endian).into()),
        }
    });
    let stack_executable =
        first(elf::PT_GNU_STACK).map(|ph| ph.p_flags(endian).0 & elf::PF_X.0 != 0);

    Ok(ElfInfo {
        elf_type,
        is_64bit: header.is_type_64(),
        machine: header.e_machine(endian).0,
        is_pie,
        entry: header.e_entry(endian).into(),
        interpreter,
        program_headers,
        sections,
        relro,
        stack_executable,
        section_index: Default::default(),
    }
    .indexed())
}

/// The NUL-terminated string at `offset`, scanning at most `max` bytes so a
/// table without NULs costs O(max) per lookup, not O(file).
fn c_str(table: &[u8], offset: usize, max: usize) -> String {
    let Some(rest) = table.get(offset..) else {
        return String::new();
    };
    let rest = &rest[..rest.len().min(max)];
    let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..len]).into_owned()
}

/// readelf's segment type names.
fn segment_kind(p_type: u32) -> String {
    let name = match p_type {
        0 => "NULL",
        1 => "LOAD",
        2 => "DYNAMIC",
        3 => "INTERP",
        4 => "NOTE",
        5 => "SHLIB",
        6 => "PHDR",
        7 => "TLS",
        0x6474_e550 => "GNU_EH_FRAME",
        0x6474_e551 => "GNU_STACK",
        0x6474_e552 => "GNU_RELRO",
        0x6474_e553 => "GNU_PROPERTY",
        0x6474_e554 => "GNU_SFRAME",
        other => return format!("{other:#x}"),
    };
    name.into()
}

/// Fills each segment's `sections` like readelf's "Section to Segment
/// mapping": allocated sections whose addresses (and, when they have file
/// bytes, file offsets) lie inside the segment. `.tbss` occupies no address
/// space of its own, so it only belongs to `PT_TLS`.
fn map_sections(segments: &mut [ProgramHeader], sections: &[Section]) -> Result<(), ElfError> {
    let alloc: Vec<&Section> = sections.iter().filter(|s| s.flags.alloc).collect();
    if segments.len().saturating_mul(alloc.len()) > MAX_MAPPING_WORK {
        return Err(ElfError::TooMany("segments x sections"));
    }
    let mut entries = 0usize;
    for seg in segments.iter_mut() {
        let seg_end = seg.vaddr.saturating_add(seg.memsz);
        let file_end = seg.offset.saturating_add(seg.filesz);
        for s in &alloc {
            if s.flags.tls && s.is_nobits() && seg.p_type != 7 {
                continue;
            }
            let in_vma = s.addr >= seg.vaddr
                && if s.size == 0 {
                    s.addr < seg_end
                } else {
                    s.addr.checked_add(s.size).is_some_and(|e| e <= seg_end)
                };
            let in_file = s.is_nobits()
                || (s.offset >= seg.offset
                    && s.offset.checked_add(s.size).is_some_and(|e| e <= file_end));
            if in_vma && in_file {
                entries += 1;
                if entries > MAX_MAPPING_ENTRIES {
                    return Err(ElfError::TooMany("section-to-segment entries"));
                }
                seg.sections.push(s.name.clone());
            }
        }
    }
    Ok(())
}
