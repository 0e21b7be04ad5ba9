//! The query server: a Unix socket whose peers are checked with SO_PEERCRED.
//! Root may ask about any process; other users only about their own.
//!
//! Connections are served by their own tasks; every request is forwarded
//! to the daemon's loop, the single owner of the models, with a oneshot
//! channel for the reply.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
    time::{Duration, timeout},
};

use crate::{
    protocol::{ErrorKind, MAX_REQUEST_BYTES, ReplyEnvelope, Request, decode_request, encode},
    throttle::accept_loop,
};

/// A peer's request, on its way to the daemon loop.
pub struct Incoming {
    pub request: Request,
    /// The peer's uid (from SO_PEERCRED).
    pub uid: u32,
    pub reply: oneshot::Sender<ReplyEnvelope>,
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot create socket directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("another memmon daemon is already serving {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {0}: {1}")]
    Bind(PathBuf, std::io::Error),
}

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the socket, mode 0660, owned by `group` when given so that its
/// members may connect (each still sees only their own processes).
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ServerError::Dir(dir.into(), e))?;
    }
    if path.exists() {
        // A live daemon answers; a stale socket file from a crash does not.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.into()));
        }
        let _ = fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|e| ServerError::Bind(path.into(), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))
        .map_err(|e| ServerError::Bind(path.into(), e))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| ServerError::Bind(path.into(), e))?;
    }
    Ok(listener)
}

pub async fn serve(listener: UnixListener, to_daemon: mpsc::Sender<Incoming>) {
    let accept = || async { listener.accept().await.map(|(stream, _)| stream) };
    accept_loop("query socket", accept, |stream| {
        let to_daemon = to_daemon.clone();
        tokio::spawn(async move {
            if let Err(err) = handle(stream, to_daemon).await {
                log::debug!("query connection ended: {err}");
            }
        });
    })
    .await
}

async fn send(stream: &mut UnixStream, reply: &ReplyEnvelope) -> std::io::Result<()> {
    let frame = encode(reply).map_err(std::io::Error::other)?;
    stream.write_all(&frame).await
}

/// Serves requests on one connection until the peer closes it.
async fn handle(mut stream: UnixStream, to_daemon: mpsc::Sender<Incoming>) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    loop {
        let mut len = [0u8; 4];
        match timeout(READ_TIMEOUT, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle client
        }
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
                let msg = "request truncated: the rest of the message never arrived";
                return send(
                    &mut stream,
                    &ReplyEnvelope::error(ErrorKind::BadRequest, msg),
                )
                .await;
            }
        }
        let reply = match decode_request(&body) {
            Err(error_reply) => error_reply,
            Ok(request) => {
                let (tx, rx) = oneshot::channel();
                if to_daemon
                    .send(Incoming {
                        request,
                        uid,
                        reply: tx,
                    })
                    .await
                    .is_err()
                {
                    return Ok(()); // shutting down
                }
                rx.await.unwrap_or_else(|_| {
                    ReplyEnvelope::error(ErrorKind::Internal, "the daemon dropped the request")
                })
            }
        };
        send(&mut stream, &reply).await?;
    }
}
