//! Who may see which process: the kernel's own rule for /proc/PID/maps
//! (ptrace read access with the asker's fs credentials, which covers
//! dumpability, gids, setuid/setgid and exec).
//!
//! For one process, the client opens /proc/PID/maps itself and passes the
//! descriptor: the kernel decided when it opened it. The daemon checks that
//! it is that file of that pid, builds the reply, and then reads from the
//! descriptor: it reads empty once the process has exec'd or exited (the
//! descriptor holds the old mm), so a reply is never sent for an image the
//! asker could not read. Lists cannot carry a descriptor per process;
//! [`visible`] applies a stricter rule to them.

use std::{
    fs::File,
    io::Read as _,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
};

use super::workers::{Failure, no_such};
use crate::server::Peer;

/// procfs's `f_type` (linux/magic.h).
const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;

impl Peer {
    fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Before the reply is built: `pid` is a process (not a thread), and a
    /// non-root peer passed its /proc/`pid`/maps, opened by the kernel's
    /// rule.
    pub(super) fn admit(&self, pid: u32) -> Result<(), Failure> {
        if tgid(pid) != Some(pid) {
            return Err(no_such(pid));
        }
        if self.is_root() {
            return Ok(());
        }
        match &self.maps {
            Some(maps) if is_maps_of(maps, pid, "maps") || is_maps_of(maps, pid, "smaps") => Ok(()),
            _ => Err(no_such(pid)),
        }
    }

    /// After the reply is built: the passed descriptor still reads (the
    /// process has neither exec'd nor exited since the peer opened it).
    pub(super) fn still_allowed(&self, pid: u32) -> Result<(), Failure> {
        if self.is_root() {
            return Ok(());
        }
        let mut byte = [0u8; 1];
        match self.maps.as_ref().map(|mut m| m.read(&mut byte)) {
            Some(Ok(1)) => Ok(()),
            _ => Err(no_such(pid)),
        }
    }

    /// /proc/`pid`/smaps to read for `query --rss`: the peer's own (the
    /// kernel let it open that file; it holds the address space of the
    /// process it was opened for), or for root the daemon's.
    pub(super) fn smaps(&self, pid: u32) -> Result<File, Failure> {
        match &self.maps {
            Some(passed) if is_maps_of(passed, pid, "smaps") => {
                passed.try_clone().map_err(|_| no_such(pid))
            }
            _ if self.is_root() => {
                File::open(format!("/proc/{pid}/smaps")).map_err(|_| no_such(pid))
            }
            Some(_) => Err((
                crate::protocol::ErrorKind::BadRequest,
                format!("--rss needs /proc/{pid}/smaps passed with the request, not maps"),
            )),
            None => Err(no_such(pid)),
        }
    }

    /// Whether a list shows `pid` to this peer. Stricter than the kernel's
    /// rule, never looser: /proc/PID/maps is owned by the peer's uid and
    /// gid (the kernel makes it root's when the process is not dumpable) and
    /// every uid and gid of the process (real, effective, saved, fs) is the
    /// peer's (so no setuid/setgid program, and no changed credentials).
    pub(super) fn sees_in_list(&self, pid: u32) -> bool {
        self.is_root() || owned_by(pid, self.uid, self.gid) == Some(true)
    }
}

/// Whether `maps` is /proc/`pid`/`name` (maps or smaps) on the procfs the
/// daemon sees: the same device and inode as that path now (a pid reused
/// since the peer opened it has a new inode).
fn is_maps_of(maps: &File, pid: u32, name: &str) -> bool {
    // SAFETY: fstatfs writes into the zeroed struct it is given; the fd is
    // open for the call.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatfs(maps.as_raw_fd(), &mut fs) } != 0
        || fs.f_type as libc::c_long != PROC_SUPER_MAGIC
    {
        return false;
    }
    let (Ok(passed), Ok(now)) = (
        maps.metadata(),
        std::fs::metadata(format!("/proc/{pid}/{name}")),
    ) else {
        return false;
    };
    passed.is_file() && passed.dev() == now.dev() && passed.ino() == now.ino()
}

/// The fields of /proc/`pid`/status line `key` (e.g. "Uid:").
fn status_field(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The thread group of `pid` (itself for a process, its leader for a
/// thread id); None when it is gone.
fn tgid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "Tgid:").first().copied()
}

/// The live process's start time (/proc/PID/stat field 22), which with the
/// pid identifies it; None when it is gone.
pub(super) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether /proc/`pid`/maps and all the process's uids and gids are `uid` and `gid`; None
/// when the process is gone.
fn owned_by(pid: u32, uid: u32, gid: u32) -> Option<bool> {
    // The kernel gives the files in /proc/PID to root when the process is
    // not dumpable (the directory itself keeps its owner on Linux 6.18).
    let maps = std::fs::metadata(format!("/proc/{pid}/maps")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let (uids, gids) = (status_field(&status, "Uid:"), status_field(&status, "Gid:"));
    Some(
        maps.uid() == uid
            && maps.gid() == gid
            && uids.len() == 4
            && gids.len() == 4
            && uids.iter().all(|&u| u == uid)
            && gids.iter().all(|&g| g == gid),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_and_tgid_of_this_process() {
        let me = std::process::id();
        assert_eq!(tgid(me), Some(me));
        let ticks = start_time(me).expect("a start time");
        let procfs = procfs::process::Process::myself().unwrap().stat().unwrap();
        assert_eq!(ticks, procfs.starttime);
    }

    #[test]
    fn only_the_maps_file_of_that_pid_passes() {
        let me = std::process::id();
        let mine = File::open(format!("/proc/{me}/maps")).unwrap();
        assert!(is_maps_of(&mine, me, "maps"));
        assert!(!is_maps_of(&mine, me, "smaps"));
        assert!(!is_maps_of(&mine, 1, "maps"));
        let status = File::open(format!("/proc/{me}/status")).unwrap();
        assert!(!is_maps_of(&status, me, "maps"));
        let smaps = File::open(format!("/proc/{me}/smaps")).unwrap();
        assert!(is_maps_of(&smaps, me, "smaps"));
        let peer = Peer {
            uid: 1000,
            gid: 1000,
            maps: Some(mine),
        };
        assert!(peer.admit(me).is_ok());
        assert!(peer.still_allowed(me).is_ok());
        assert!(peer.admit(1).is_err(), "another pid's check with my fd");
        let without = Peer { maps: None, ..peer };
        assert!(without.admit(me).is_err());
        assert!(without.still_allowed(me).is_err());
    }
}
