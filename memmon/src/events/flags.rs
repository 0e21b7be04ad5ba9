//! Human names for the flag words of memory syscalls, as strace prints them.

const PROT_NAMES: [(u64, char); 3] = [(0x1, 'R'), (0x2, 'W'), (0x4, 'X')];

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

const MMAP_FLAGS: &[(u64, &str)] = &[
    (0x01, "SHARED"),
    (0x02, "PRIVATE"),
    (0x10, "FIXED"),
    (0x20, "ANONYMOUS"),
    (0x100, "GROWSDOWN"),
    (0x800, "DENYWRITE"),
    (0x1000, "EXECUTABLE"),
    (0x2000, "LOCKED"),
    (0x4000, "NORESERVE"),
    (0x8000, "POPULATE"),
    (0x10000, "NONBLOCK"),
    (0x20000, "STACK"),
    (0x40000, "HUGETLB"),
    (0x80000, "SYNC"),
    (0x100000, "FIXED_NOREPLACE"),
    (0x4000000, "UNINITIALIZED"),
];

const MREMAP_FLAGS: &[(u64, &str)] = &[(0x1, "MAYMOVE"), (0x2, "FIXED"), (0x4, "DONTUNMAP")];

fn flag_string(value: u64, table: &[(u64, &str)]) -> String {
    let mut parts = Vec::new();
    let mut rest = value;
    // MAP_SHARED_VALIDATE is SHARED|PRIVATE (0x3): print it as one word.
    if table.as_ptr() == MMAP_FLAGS.as_ptr() && value & 0x3 == 0x3 {
        parts.push("SHARED_VALIDATE".to_owned());
        rest &= !0x3;
    }
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
    flag_string(flags, MMAP_FLAGS)
}

pub fn mremap_flags_string(flags: u64) -> String {
    flag_string(flags, MREMAP_FLAGS)
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
        assert_eq!(errno_name(12), Some("ENOMEM"));
        assert_eq!(errno_name(4095), None);
    }
}
