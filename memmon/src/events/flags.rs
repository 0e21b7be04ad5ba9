//! Human names for the flag words of memory syscalls, as strace prints them.
//! The bits come from libc, widened to the u64 the tracepoints carry.

use libc::c_int;

/// A libc flag as a syscall argument word (every flag here is positive).
const fn bit(flag: c_int) -> u64 {
    flag as u64
}

const PROT_NAMES: [(u64, char); 3] = [
    (bit(libc::PROT_READ), 'R'),
    (bit(libc::PROT_WRITE), 'W'),
    (bit(libc::PROT_EXEC), 'X'),
];

/// `RW-` style; unknown bits are appended in hex.
pub fn prot_string(prot: u64) -> String {
    let mut out: String = PROT_NAMES
        .iter()
        .map(|&(bit, ch)| if prot & bit != 0 { ch } else { '-' })
        .collect();
    let known = PROT_NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
    if prot & !known != 0 {
        out.push_str(&format!("|{:#x}", prot & !known));
    }
    out
}

/// libc has no MAP_UNINITIALIZED for glibc targets; the kernel's value
/// (include/uapi/asm-generic/mman-common.h), honoured only without an MMU.
const MAP_UNINITIALIZED: u64 = 0x400_0000;

const MMAP_FLAGS: &[(u64, &str)] = &[
    (bit(libc::MAP_SHARED), "SHARED"),
    (bit(libc::MAP_PRIVATE), "PRIVATE"),
    (bit(libc::MAP_FIXED), "FIXED"),
    (bit(libc::MAP_ANONYMOUS), "ANONYMOUS"),
    (bit(libc::MAP_GROWSDOWN), "GROWSDOWN"),
    (bit(libc::MAP_DENYWRITE), "DENYWRITE"),
    (bit(libc::MAP_EXECUTABLE), "EXECUTABLE"),
    (bit(libc::MAP_LOCKED), "LOCKED"),
    (bit(libc::MAP_NORESERVE), "NORESERVE"),
    (bit(libc::MAP_POPULATE), "POPULATE"),
    (bit(libc::MAP_NONBLOCK), "NONBLOCK"),
    (bit(libc::MAP_STACK), "STACK"),
    (bit(libc::MAP_HUGETLB), "HUGETLB"),
    (bit(libc::MAP_SYNC), "SYNC"),
    (bit(libc::MAP_FIXED_NOREPLACE), "FIXED_NOREPLACE"),
    (MAP_UNINITIALIZED, "UNINITIALIZED"),
];

const MREMAP_FLAGS: &[(u64, &str)] = &[
    (bit(libc::MREMAP_MAYMOVE), "MAYMOVE"),
    (bit(libc::MREMAP_FIXED), "FIXED"),
    (bit(libc::MREMAP_DONTUNMAP), "DONTUNMAP"),
];

/// `A|B|0x..`: `first` (a word for bits already taken out of `value`),
/// then the names of `value`'s bits in `table`, then what is left in hex.
fn flag_string(first: Option<&str>, value: u64, table: &[(u64, &str)]) -> String {
    let mut parts: Vec<String> = first.into_iter().map(str::to_owned).collect();
    let mut rest = value;
    for &(bit, name) in table {
        if rest & bit != 0 {
            parts.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    if parts.is_empty() {
        "0".to_owned()
    } else {
        parts.join("|")
    }
}

pub fn mmap_flags_string(flags: u64) -> String {
    // MAP_SHARED_VALIDATE is SHARED|PRIVATE (0x3): print it as one word.
    let validate = bit(libc::MAP_SHARED_VALIDATE);
    if flags & validate == validate {
        flag_string(Some("SHARED_VALIDATE"), flags & !validate, MMAP_FLAGS)
    } else {
        flag_string(None, flags, MMAP_FLAGS)
    }
}

pub fn mremap_flags_string(flags: u64) -> String {
    flag_string(None, flags, MREMAP_FLAGS)
}

/// `ENOMEM` for 12, etc.; None for numbers this table doesn't know.
pub fn errno_name(errno: i64) -> Option<&'static str> {
    Some(match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        26 => "ETXTBSY",
        27 => "EFBIG",
        75 => "EOVERFLOW",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_strace() {
        assert_eq!(prot_string(0), "---");
        assert_eq!(prot_string(3), "RW-");
        assert_eq!(prot_string(7), "RWX");
        assert_eq!(prot_string(0x1000001), "R--|0x1000000");
        assert_eq!(mmap_flags_string(0x22), "PRIVATE|ANONYMOUS");
        assert_eq!(mmap_flags_string(0x20022), "PRIVATE|ANONYMOUS|STACK");
        assert_eq!(mmap_flags_string(0x3), "SHARED_VALIDATE");
        assert_eq!(mmap_flags_string(0x1000_0002), "PRIVATE|0x10000000");
        assert_eq!(mmap_flags_string(0), "0");
        assert_eq!(mremap_flags_string(3), "MAYMOVE|FIXED");
        assert_eq!(mremap_flags_string(0x4), "DONTUNMAP");
        assert_eq!(
            mmap_flags_string(0x10_0000 | 0x400_0000 | 0x1_0000_0000),
            "FIXED_NOREPLACE|UNINITIALIZED|0x100000000"
        );
        assert_eq!(errno_name(12), Some("ENOMEM"));
        assert_eq!(errno_name(4095), None);
    }
}
