//! The loop's thread runs at a higher priority than everything else the
//! daemon does. On a loaded machine the loop, which needs ~10% of a core,
//! waited up to 130 ms at a time for a CPU behind the daemon's own layout
//! builders and other processes (measured by `cargo xtask bench-query`),
//! and records waited in the ring buffer as long. Only the loop's thread
//! is raised: workers, servers and the I/O pool keep the default.

/// The loop thread's nice value. Raising a thread's priority needs
/// CAP_SYS_NICE or RLIMIT_NICE (the unit sets `LimitNICE=-10`).
pub(super) const LOOP_NICE: i32 = -10;

/// Raises the calling thread (the loop's) to [`LOOP_NICE`]; says why not
/// when it may not.
pub(super) fn raise_loop_thread() {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: PRIO_PROCESS with a thread id changes that thread's nice
    // value only; no pointers are involved.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, LOOP_NICE) };
    if done != 0 {
        log::info!(
            "the event loop runs at the default priority (nice {LOOP_NICE} refused: {}); \
             on a loaded machine its drains may wait for a CPU",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    /// The nice value of this thread, from /proc (field 19 of stat).
    fn nice_of_this_thread() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn only_the_calling_thread_is_raised() {
        // Needs CAP_SYS_NICE (tests run as root); elsewhere it is a no-op.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        std::thread::spawn(move || {
            let before = nice_of_this_thread();
            let other = std::thread::spawn(nice_of_this_thread);
            super::raise_loop_thread();
            let after = nice_of_this_thread();
            if root {
                assert_eq!(after, i64::from(super::LOOP_NICE));
            }
            assert_eq!(
                other.join().unwrap(),
                before,
                "another thread kept its nice value"
            );
            assert_eq!(
                std::thread::spawn(nice_of_this_thread).join().unwrap(),
                after,
                "threads the loop starts inherit it"
            );
        })
        .join()
        .unwrap();
    }
}
