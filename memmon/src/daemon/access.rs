//! Who may see which process (moved here as it was; to be replaced by the
//! kernel's own rule).

use crate::protocol::ErrorKind;

/// Root sees everything; other users only processes that are wholly
/// theirs: real, effective, saved and filesystem uid all equal to the
/// peer's, read from /proc now (a setuid-root program started by the
/// user, or a process that changed uid since its snapshot, is not).
pub(super) fn authorize(peer_uid: u32, pid: u32) -> Result<(), (ErrorKind, String)> {
    if peer_uid == 0 {
        return Ok(());
    }
    match owned_by(pid, peer_uid) {
        None => Err((ErrorKind::NoSuchPid, format!("no such process: pid {pid}"))),
        Some(true) => Ok(()),
        Some(false) => Err((
            ErrorKind::PermissionDenied,
            format!("pid {pid} belongs to another user; only root may inspect it"),
        )),
    }
}

/// Whether `peer_uid` may see `pid` in a list.
pub(super) fn visible(peer_uid: u32, pid: u32) -> bool {
    peer_uid == 0 || owned_by(pid, peer_uid) == Some(true)
}

/// Whether every uid of `pid` (real, effective, saved, fs) is `uid`;
/// None when the process is gone.
fn owned_by(pid: u32, uid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = uids.split_whitespace().map(|u| u.parse::<u32>().ok());
    Some(ids.all(|id| id == Some(uid)))
}
