//! The query server: a Unix socket whose peers are known by SO_PEERCRED,
//! and who pass the /proc/PID/maps they opened with each request about one
//! process (SCM_RIGHTS), so that the kernel's rule decides what a user may
//! see (see `daemon::access`).
//!
//! Connections are served by their own tasks; every request is forwarded
//! to the daemon's loop, the single owner of the models, with a oneshot
//! channel for the reply. Connections are bounded per uid and in total
//! (see [`crate::connections`]); a peer has [`READ_TIMEOUT`] to send each
//! request and [`WRITE_TIMEOUT`] to read each reply, and a reply larger
//! than the client accepts ([`MAX_REPLY_BYTES`]) is answered `too_large`.

mod bind;

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
    sync::Arc,
};

use thiserror::Error;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, Interest},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
    time::{Duration, timeout},
};

use crate::{
    connections::{Limits, QUERY_SOCKET, REPLIES_TOO_LARGE, Slot, Slots},
    fdpass::recv_with_fd,
    protocol::{
        ErrorKind, MAX_REPLY_BYTES, MAX_REQUEST_BYTES, ReplyEnvelope, Request, decode_request,
        encode, encode_rendered,
    },
    throttle::accept_loop,
};

/// Who asks, as SO_PEERCRED and SCM_RIGHTS told the server.
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// /proc/PID/maps as the peer opened it (with its own credentials), for
    /// a request about one pid.
    pub maps: Option<std::fs::File>,
}

/// A peer's request, on its way to the daemon's workers.
pub struct Incoming {
    pub request: Request,
    pub peer: Peer,
    /// The reply, already a frame (see [`frame`]): workers encode it on a
    /// blocking thread, since a large layout takes milliseconds to encode
    /// and this runtime's one thread also drains the ring buffer.
    pub reply: oneshot::Sender<Arc<Vec<u8>>>,
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot create socket directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("another memmon daemon is already serving {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {0}: {1}")]
    Bind(PathBuf, std::io::Error),
    #[error(
        "refusing the socket directory {0}: it {1}; use a directory only root can write \
         (like /run/memmon, mode 0755) or fix its owner and mode"
    )]
    UnsafeDir(PathBuf, String),
    #[error("{0} exists and is not a socket: remove it or choose another socket path")]
    NotASocket(PathBuf),
}

pub use bind::bind;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to read its reply.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections: 16 per user, 64 for root, 128 in all, far below the
/// unit's LimitNOFILE (1024) so that connections cannot starve the daemon
/// of file descriptors.
const LIMITS: Limits = Limits {
    total: 128,
    per_key: |uid| if uid == 0 { 64 } else { 16 },
};

pub async fn serve(listener: UnixListener, to_daemon: mpsc::Sender<Incoming>) {
    let slots = Slots::new(LIMITS, &QUERY_SOCKET);
    let accept = || async { listener.accept().await.map(|(stream, _)| stream) };
    accept_loop("query socket", accept, |stream| {
        let Ok((uid, gid)) = stream.peer_cred().map(|c| (c.uid(), c.gid())) else {
            return;
        };
        // Past the cap with every connection busy: dropping it closes it.
        let Some(slot) = slots.admit(uid) else {
            return;
        };
        let to_daemon = to_daemon.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = handle(stream, (uid, gid), &slot, to_daemon) => {
                    if let Err(err) = ended {
                        log::debug!("query connection ended: {err}");
                    }
                }
                () = slot.evicted() => {}
            }
        });
    })
    .await
}

/// `reply` as one frame; a reply over the client's limit becomes a
/// `too_large` error (it would be refused unread).
pub fn frame(reply: &ReplyEnvelope) -> Vec<u8> {
    match encode(reply) {
        Ok(frame) if frame.len() - 4 <= MAX_REPLY_BYTES as usize => frame,
        too_large => {
            REPLIES_TOO_LARGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let size = too_large.map_or("over 4 GiB".to_owned(), |f| format!("{}", f.len() - 4));
            let msg = format!(
                "the reply ({size} bytes) exceeds the limit of {MAX_REPLY_BYTES} bytes; ask for \
                 fewer events, or read /proc/PID/maps for a process this large"
            );
            // A short error always encodes.
            encode(&ReplyEnvelope::error(ErrorKind::TooLarge, msg)).unwrap_or_default()
        }
    }
}

/// A rendered layout as one frame and its bytes (see
/// [`crate::protocol::Reply::Rendered`]), or `too_large` as [`frame`].
pub fn rendered_frame(bytes: &[u8]) -> Vec<u8> {
    match encode_rendered(bytes) {
        Ok(frame) if bytes.len() <= MAX_REPLY_BYTES as usize => frame,
        _ => {
            REPLIES_TOO_LARGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let msg = format!(
                "the rendered reply ({} bytes) exceeds the limit of {MAX_REPLY_BYTES} bytes; read \
                 /proc/PID/maps for a process this large",
                bytes.len()
            );
            frame(&ReplyEnvelope::error(ErrorKind::TooLarge, msg))
        }
    }
}

/// Writes one small reply (an error the server answers itself).
async fn send(stream: &mut UnixStream, reply: &ReplyEnvelope) -> std::io::Result<()> {
    write(stream, &frame(reply)).await
}

/// Writes one frame within [`WRITE_TIMEOUT`].
async fn write(stream: &mut UnixStream, frame: &[u8]) -> std::io::Result<()> {
    match timeout(WRITE_TIMEOUT, stream.write_all(frame)).await {
        Ok(written) => written,
        Err(_) => {
            QUERY_SOCKET.timed_out();
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read its reply",
            ))
        }
    }
}

/// Reads a frame's 4-byte length, with the descriptor the client passed
/// along with it (the client sends each frame in one `sendmsg`, so the
/// descriptor arrives with its first byte).
async fn read_head(stream: &UnixStream, head: &mut [u8; 4]) -> std::io::Result<Option<OwnedFd>> {
    let (mut got, mut passed) = (0, None);
    while got < head.len() {
        let (n, fd) = stream
            .async_io(Interest::READABLE, || {
                recv_with_fd(stream.as_raw_fd(), &mut head[got..])
            })
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
        passed = passed.or(fd);
    }
    Ok(passed)
}

/// Serves requests on one connection until the peer closes it.
async fn handle(
    mut stream: UnixStream,
    (uid, gid): (u32, u32),
    slot: &Slot,
    to_daemon: mpsc::Sender<Incoming>,
) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 4];
        let maps = match timeout(READ_TIMEOUT, read_head(&stream, &mut len)).await {
            Ok(Ok(maps)) => maps,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                QUERY_SOCKET.timed_out(); // idle client
                return Ok(());
            }
        };
        let len = u32::from_be_bytes(len);
        if len > MAX_REQUEST_BYTES {
            // The stream is out of sync past an oversized header: answer, close.
            let msg = format!("request of {len} bytes exceeds the limit of {MAX_REQUEST_BYTES}");
            return send(&mut stream, &ReplyEnvelope::error(ErrorKind::TooLarge, msg)).await;
        }
        let mut body = vec![0u8; len as usize];
        match timeout(READ_TIMEOUT, stream.read_exact(&mut body)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                QUERY_SOCKET.timed_out();
                let msg = "request truncated: the rest of the message never arrived";
                return send(
                    &mut stream,
                    &ReplyEnvelope::error(ErrorKind::BadRequest, msg),
                )
                .await;
            }
        }
        // A whole request: not idle (and not to be closed for room) until
        // its reply is written.
        let _busy = slot.busy();
        let reply = match decode_request(&body) {
            Err(error_reply) => Arc::new(frame(&error_reply)),
            Ok(request) => {
                let (tx, rx) = oneshot::channel();
                if to_daemon
                    .send(Incoming {
                        request,
                        peer: Peer {
                            uid,
                            gid,
                            maps: maps.map(std::fs::File::from),
                        },
                        reply: tx,
                    })
                    .await
                    .is_err()
                {
                    return Ok(()); // shutting down
                }
                rx.await.unwrap_or_else(|_| {
                    Arc::new(frame(&ReplyEnvelope::error(
                        ErrorKind::Internal,
                        "the daemon dropped the request",
                    )))
                })
            }
        };
        write(&mut stream, &reply).await?;
    }
}
