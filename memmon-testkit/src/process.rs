//! Children and /proc: waiting with a timeout, and a process's state.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Waits for `child` up to `timeout`; None when it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The state letter of /proc/PID/stat text (`R`, `S`, `T`, `Z`, ...).
pub fn proc_state(stat: &str) -> Option<char> {
    // The comm may hold spaces and parentheses: the state follows the last `)`.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The state letter of `pid`; None once it is gone.
pub fn state_of(pid: u32) -> Option<char> {
    proc_state(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_last_parenthesis() {
        assert_eq!(proc_state("42 (a) b) (c) T 1 42"), Some('T'));
        assert_eq!(proc_state("42 (sleep) S 1"), Some('S'));
        assert_eq!(proc_state("garbage"), None);
        // Our main thread waits for the test threads: some state, not gone.
        assert!(state_of(std::process::id()).is_some());
        assert_eq!(state_of(u32::MAX), None);
    }
}
