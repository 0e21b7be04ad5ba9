//! Which syscalls' layout changes memmon sees without the mmap-lock safety
//! net (`mmap_lock_write` in memmon-ebpf): the bitmap handed to the kernel
//! programs. Any other syscall that takes the mmap lock for writing marks
//! its process for a resync from /proc.

use memmon_common::SEEN_SYSCALLS_WORDS;

use crate::events::Syscall;

/// Syscalls whose layout changes are covered by another event, and how.
/// (The memory syscalls of [`Syscall::ALL`] are seen through their own
/// events; prctl(PR_SET_VMA) is recognised by the kernel program itself.)
pub const COVERED_ELSEWHERE: [(i64, &str); 8] = [
    (libc::SYS_clone, "fork copies the parent's model"),
    (libc::SYS_clone3, "fork copies the parent's model"),
    (libc::SYS_fork, "fork copies the parent's model"),
    (libc::SYS_vfork, "fork copies the parent's model"),
    (libc::SYS_execve, "exec reseeds the process from /proc"),
    (libc::SYS_execveat, "exec reseeds the process from /proc"),
    (libc::SYS_exit, "the exit event drops the model"),
    (libc::SYS_exit_group, "the exit event drops the model"),
];

/// The `SEEN_SYSCALLS` bitmap: bit `nr % 64` of word `nr / 64`.
pub fn seen_syscalls() -> [u64; SEEN_SYSCALLS_WORDS] {
    let mut bits = [0u64; SEEN_SYSCALLS_WORDS];
    let nrs = Syscall::ALL
        .iter()
        .map(|s| s.nr() as usize)
        .chain(COVERED_ELSEWHERE.iter().map(|&(nr, _)| nr as usize));
    for nr in nrs {
        assert!(
            nr < SEEN_SYSCALLS_WORDS * 64,
            "syscall {nr} is past SEEN_SYSCALLS; widen it"
        );
        bits[nr / 64] |= 1 << (nr % 64);
    }
    bits
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// x86_64's map_shadow_stack (Linux 6.6), which this libc does not name.
    const SYS_MAP_SHADOW_STACK: i64 = 453;

    fn is_seen(bits: &[u64; SEEN_SYSCALLS_WORDS], nr: usize) -> bool {
        bits[nr / 64] & (1 << (nr % 64)) != 0
    }

    #[test]
    fn seen_are_the_modelled_and_covered_syscalls_only() {
        let bits = seen_syscalls();
        for s in Syscall::ALL {
            assert!(is_seen(&bits, s.nr() as usize), "{}", s.name());
        }
        let count: u32 = bits.iter().map(|w| w.count_ones()).sum();
        assert_eq!(count as usize, Syscall::ALL.len() + COVERED_ELSEWHERE.len());
        for unseen in [
            libc::SYS_madvise,
            libc::SYS_mlock,
            libc::SYS_arch_prctl,
            libc::SYS_prctl,
            SYS_MAP_SHADOW_STACK,
        ] {
            assert!(!is_seen(&bits, unseen as usize), "{unseen}");
        }
    }

    /// The kernel program reads a compat syscall's number as a native one.
    /// That is only safe if every compat syscall whose number is a seen
    /// native one leaves the layout alone (or is exec or clone3, which other
    /// events cover). Checked against the i386 table of this machine's
    /// kernel headers, so a new seen syscall cannot silently hide one.
    #[test]
    fn compat_numbers_colliding_with_seen_ones_change_no_layout() {
        const HARMLESS_COMPAT: &[&str] = &[
            // Take no mmap write lock.
            "link",
            "chdir",
            "unlink",
            "epoll_create1",
            "stime",
            "utime",
            "sigaction",
            "setgroups32",
            "fchown32",
            "setfsgid32",
            "mpx",
            "setpgid",
            "ulimit",
            "oldolduname",
            "timerfd_create",
            "umask",
            "fgetxattr",
            "sched_getscheduler",
            // Covered by the exec and fork events.
            "execve",
            "clone3",
        ];
        let header = "/usr/include/x86_64-linux-gnu/asm/unistd_32.h";
        let text = std::fs::read_to_string(header)
            .unwrap_or_else(|e| panic!("{header}: {e}; install linux-libc-dev"));
        let compat: BTreeMap<usize, &str> = text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("#define __NR_")?;
                let (name, nr) = rest.split_once(' ')?;
                Some((nr.trim().parse().ok()?, name))
            })
            .collect();
        assert!(
            compat.len() > 400,
            "parsed {} compat syscalls",
            compat.len()
        );
        let bits = seen_syscalls();
        for (nr, name) in &compat {
            if *nr < SEEN_SYSCALLS_WORDS * 64 && is_seen(&bits, *nr) {
                assert!(
                    HARMLESS_COMPAT.contains(name),
                    "compat {name} ({nr}) shares its number with a seen native syscall: \
                     the mmap-lock net would miss it if it changes a layout"
                );
            }
        }
    }
}
