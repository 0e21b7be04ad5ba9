//! ELF files a local user could craft to make classification expensive:
//! memmon's unit tests classify them, and its hostile-ELF test maps them
//! through the real daemon.

const PAGE: u64 = 4096;

/// A little-endian ELF64 `ET_DYN` with `nload` PT_LOADs (each mapping the
/// whole file at vaddr `i * PAGE`) and `nsec` sections, every one of them
/// allocated and spanning the first page. With `nsec` above 0xff00 the
/// count lives in section 0's `sh_size`, as the ELF spec says.
pub fn crafted_elf(nsec: usize, nload: usize) -> Vec<u8> {
    let strtab: Vec<u8> = std::iter::once(0u8)
        .chain((0..nsec).flat_map(|i| format!(".s{i:05}\0").into_bytes()))
        .collect();
    let phoff = 64u64;
    let strtab_off = phoff + 56 * nload as u64;
    let shoff = (strtab_off + strtab.len() as u64).div_ceil(64) * 64;
    let total = shoff + 64 * nsec as u64;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    for v in [3u16, 62] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    for v in [0u64, phoff, shoff] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    // ehsize, phentsize, phnum, shentsize, shnum (0: see section 0), SHN_XINDEX
    for v in [64u16, 56, nload as u16, 64, 0, 0xffff] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for i in 0..nload as u64 {
        out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        out.extend_from_slice(&4u32.to_le_bytes()); // PF_R
        for v in [0, i * PAGE, i * PAGE, total, total, PAGE] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&strtab);
    out.resize(shoff as usize, 0);
    let mut section = |name: u32, sh_type: u32, flags: u64, offset: u64, size: u64, link: u32| {
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&sh_type.to_le_bytes());
        for v in [flags, 0, offset, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&link.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for v in [1u64, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    section(0, 0, 0, 0, nsec as u64, 1); // count and string table index
    section(1, 3, 0, strtab_off, strtab.len() as u64, 0);
    for i in 2..nsec {
        section(1 + 8 * i as u32, 1, 2, 0, PAGE, 0); // PROGBITS, SHF_ALLOC
    }
    out
}
