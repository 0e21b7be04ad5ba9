//! Thread stack pointers from /proc/PID/task/*/syscall.

/// The stack pointer in one `/proc/PID/task/TID/syscall` line: `nr arg1 ..
/// arg6 sp pc` inside a syscall, `-1 sp pc` when blocked outside one, or
/// `running` (no registers to show).
pub fn parse_syscall_sp(line: &str) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 3 {
        return None;
    }
    let sp = fields[fields.len() - 2];
    u64::from_str_radix(sp.strip_prefix("0x").unwrap_or(sp), 16).ok()
}

/// The stack pointer of every thread of `pid` that isn't running right
/// now. Reading another process's needs ptrace access; threads that can't
/// be read are left out.
pub fn thread_stack_pointers(pid: u32) -> Vec<u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut sps: Vec<u64> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("syscall")).ok())
        .filter_map(|s| parse_syscall_sp(&s))
        .collect();
    sps.sort_unstable();
    sps
}
