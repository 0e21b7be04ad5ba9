//! Whether a mapped file lives on a FUSE or network filesystem, whose
//! server (another user's process, or a host that went away) decides how
//! long a read takes. Told from the process's own mountinfo, by the device
//! number the model already has: no access to the file itself.

/// Filesystem types whose reads a user or a remote host can stall.
const REMOTE: &[&str] = &[
    "fuse",
    "fuseblk",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "ceph",
    "afs",
    "glusterfs",
    "lustre",
    "gfs2",
    "ocfs2",
    "davfs",
    "ncpfs",
    "coda",
    "orangefs",
    "virtiofs",
];

pub fn is_remote(fstype: &str) -> bool {
    // "fuse.sshfs", "fuse.squashfuse", …: the subtype names the server.
    let base = fstype.split('.').next().unwrap_or(fstype);
    REMOTE.contains(&base)
}

/// The fstype of the mount with device `major:minor` in a mountinfo text.
pub fn fstype_of(mountinfo: &str, major: u32, minor: u32) -> Option<&str> {
    let dev = format!("{major}:{minor}");
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        (mount.split_whitespace().nth(2)? == dev).then_some(())?;
        fs.split_whitespace().next()
    })
}

/// Whether device `major:minor`, as `pid` sees its mounts, is remote;
/// unknown devices are not (mountinfo is procfs, never stalled by them).
pub fn device_is_remote(pid: u32, major: u32, minor: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .ok()
        .is_some_and(|text| fstype_of(&text, major, minor).is_some_and(is_remote))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
40 22 0:51 / /mnt/sq rw,nosuid,nodev,relatime shared:20 - fuse.squashfuse squashfuse rw,user_id=1000
41 22 0:52 / /net rw,relatime shared:21 - nfs4 srv:/export rw,vers=4.2
";

    #[test]
    fn finds_fuse_and_network_mounts_by_device() {
        assert_eq!(fstype_of(MOUNTINFO, 259, 2), Some("ext4"));
        assert_eq!(fstype_of(MOUNTINFO, 0, 51), Some("fuse.squashfuse"));
        assert_eq!(fstype_of(MOUNTINFO, 0, 9), None);
        assert!(!is_remote("ext4"));
        assert!(is_remote("fuse.squashfuse"));
        assert!(is_remote("fuse.sshfs"));
        assert!(is_remote("nfs4"));
        assert!(is_remote("9p"));
        assert!(!is_remote("tmpfs"));
    }

    #[test]
    fn own_root_is_not_remote_here() {
        let root = std::fs::metadata("/proc/self/exe").unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let dev = root.dev();
        // A CI root filesystem is local; a FUSE test mount is not this one.
        let remote = device_is_remote(std::process::id(), libc::major(dev), libc::minor(dev));
        let fstype = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|t| fstype_of(&t, libc::major(dev), libc::minor(dev)).map(str::to_owned));
        assert_eq!(remote, fstype.as_deref().is_some_and(is_remote));
    }
}
