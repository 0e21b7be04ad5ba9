//! Creating the query socket without trusting its path: the daemon runs
//! as root, so a directory other users can write would let them point
//! the socket, its unlink, chmod or chown at a file of their choosing.

use std::{
    ffi::CString,
    fs, io,
    os::unix::{
        ffi::OsStrExt as _,
        fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _},
    },
    path::Path,
};

use tokio::net::UnixListener;

use super::ServerError;

/// Binds the socket, mode 0660, owned by `group` when given so that its
/// members may connect (each still sees only their own processes).
///
/// The socket's directory is created (0755) if missing, and refused when
/// it is a symlink, not ours, or writable by group or others: then no one
/// else can swap the socket for a link between our checks and our
/// chmod/chown, which in any case do not follow symlinks. A leftover file
/// is removed only if it is a socket no daemon answers on.
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, ServerError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| ServerError::Dir(dir.into(), e))?;
    check_dir(dir)?;
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|e| ServerError::Bind(path.into(), e))?;
    let bind_err = |e| ServerError::Bind(path.into(), e);
    let meta = fs::symlink_metadata(path).map_err(bind_err)?;
    if !meta.file_type().is_socket() {
        return Err(bind_err(io::Error::other("replaced after bind")));
    }
    chmod_nofollow(path, 0o660).map_err(bind_err)?;
    if let Some(gid) = group {
        std::os::unix::fs::lchown(path, None, Some(gid)).map_err(bind_err)?;
    }
    Ok(listener)
}

/// Refuses a socket directory anyone but us could change.
fn check_dir(dir: &Path) -> Result<(), ServerError> {
    let unsafe_dir = |why: String| ServerError::UnsafeDir(dir.into(), why);
    let meta = fs::symlink_metadata(dir).map_err(|e| ServerError::Dir(dir.into(), e))?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(unsafe_dir(format!(
            "belongs to uid {}, not to the daemon's uid {euid}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "can be written by its group or others (mode {:04o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Removes a socket left by a daemon that died; anything else is refused.
fn remove_stale(path: &Path) -> Result<(), ServerError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ServerError::Bind(path.into(), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket(path.into()));
    }
    // A live daemon answers; a stale socket file from a crash does not.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse(path.into()));
    }
    fs::remove_file(path).map_err(|e| ServerError::Bind(path.into(), e))
}

/// chmod that fails on a symlink instead of following it.
fn chmod_nofollow(path: &Path, mode: libc::mode_t) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::fchmodat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            mode,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;
    use crate::testutil::scratch_dir;

    fn bind_now(path: &Path) -> Result<UnixListener, ServerError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _entered = rt.enter();
        bind(path, None)
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn binds_in_a_private_directory_creating_it_0755_and_replaces_a_stale_socket() {
        let scratch = scratch_dir();
        set_mode(&scratch, 0o755);
        let dir = scratch.join("run/memmon");
        let sock = dir.join("memmon.sock");
        // A stale socket: bound, then its listener gone.
        fs::create_dir_all(&dir).unwrap();
        set_mode(&scratch.join("run"), 0o755);
        set_mode(&dir, 0o755);
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let listener = bind_now(&sock).expect("a stale socket is replaced");
        let meta = fs::symlink_metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o660);
        drop(listener);
        let fresh = scratch.join("new");
        bind_now(&fresh.join("s.sock")).expect("a missing directory is created");
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o755);
        fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let dir = scratch_dir();
        for mode in [0o777, 0o775, 0o757, 0o1777] {
            set_mode(&dir, mode);
            let err = bind_now(&dir.join("memmon.sock")).map(|_| ()).unwrap_err();
            assert!(
                matches!(err, ServerError::UnsafeDir(..)) && err.to_string().contains("others"),
                "mode {mode:o}: {err}"
            );
            assert!(!dir.join("memmon.sock").exists(), "nothing bound");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_symlinked_directory() {
        let scratch = scratch_dir();
        set_mode(&scratch, 0o755);
        let real = scratch.join("real");
        fs::create_dir(&real).unwrap();
        set_mode(&real, 0o755);
        let link = scratch.join("link");
        symlink(&real, &link).unwrap();
        let err = bind_now(&link.join("memmon.sock")).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, ServerError::UnsafeDir(..)) && err.to_string().contains("symbolic link"),
            "{err}"
        );
        assert!(!real.join("memmon.sock").exists());
        fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn never_unlinks_or_chmods_what_is_not_a_socket() {
        let dir = scratch_dir();
        set_mode(&dir, 0o755);
        let target = dir.join("precious");
        fs::write(&target, "keep me").unwrap();
        set_mode(&target, 0o600);
        // A regular file where the socket goes, and a symlink to one.
        let file = dir.join("file.sock");
        fs::write(&file, "keep me too").unwrap();
        let link = dir.join("link.sock");
        symlink(&target, &link).unwrap();
        for path in [&file, &link] {
            let err = bind_now(path).map(|_| ()).unwrap_err();
            assert!(matches!(err, ServerError::NotASocket(_)), "{err}");
        }
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep me too");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_live_daemons_socket_is_left_alone() {
        let dir = scratch_dir();
        set_mode(&dir, 0o755);
        let sock = dir.join("memmon.sock");
        let _live = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = bind_now(&sock).map(|_| ()).unwrap_err();
        assert!(matches!(err, ServerError::InUse(_)), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chmod_nofollow_refuses_a_symlink() {
        let dir = scratch_dir();
        let target = dir.join("target");
        fs::write(&target, "").unwrap();
        set_mode(&target, 0o600);
        let link = dir.join("link");
        symlink(&target, &link).unwrap();
        assert!(chmod_nofollow(&link, 0o666).is_err());
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
