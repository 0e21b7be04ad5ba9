//! One file descriptor passed with a message over a Unix stream socket
//! (SCM_RIGHTS): the client hands the daemon the /proc/PID/maps it opened
//! with its own credentials, so the kernel decides who may see what.

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    ptr,
};

/// Room for a few descriptors: a peer sending more loses the extras
/// (closed here), never the daemon's descriptor table.
const MAX_FDS: usize = 4;

/// Control-message buffer, aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct Control([u8; 128]);

const _: () = assert!(size_of::<Control>() >= cmsg_space(MAX_FDS * size_of::<RawFd>()));

const fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE(len as u32) as usize }
}

/// Sends `bytes` (some of them: returns how many), with `fd` attached
/// when given. The socket is blocking.
pub fn send_with_fd(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = Control([0; 128]);
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        let raw = fd.as_raw_fd();
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(size_of::<RawFd>()) as _;
        // SAFETY: msg_control points at `control`, large enough for one
        // header and one fd (asserted above), so CMSG_FIRSTHDR is non-null
        // and CMSG_DATA lies inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), raw);
        }
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Receives into `buf` (returns how many bytes, 0 at end of stream), with
/// the first descriptor passed alongside, if any. Non-blocking sockets
/// return `WouldBlock` as usual.
pub fn recv_with_fd(socket: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = Control([0; 128]);
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<Control>() as _;
    // SAFETY: msg points at live buffers for the duration of the call.
    let got = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of
    // well-formed headers; CMSG_FIRSTHDR/NXTHDR stay inside them, and each
    // SCM_RIGHTS payload holds descriptors now owned by this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // Extras are closed as `fds` drops.
    let first = (!fds.is_empty()).then(|| fds.swap_remove(0));
    Ok((got as usize, first))
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        os::{fd::AsFd as _, unix::net::UnixStream},
    };

    use super::*;

    #[test]
    fn a_descriptor_travels_with_its_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/proc/self/maps").unwrap();
        assert_eq!(
            send_with_fd(a.as_fd(), b"abcd", Some(file.as_fd())).unwrap(),
            4
        );
        assert_eq!(send_with_fd(a.as_fd(), b"ef", None).unwrap(), 2);
        let mut buf = [0u8; 4];
        let (n, fd) = recv_with_fd(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, &buf), (4, b"abcd"));
        let mut text = String::new();
        std::fs::File::from(fd.expect("the fd"))
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("[stack]"), "{text}");
        let (n, fd) = recv_with_fd(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (2, true));
    }
}
