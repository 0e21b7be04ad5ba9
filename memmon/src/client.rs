//! The CLI's side of the query socket.

use std::{
    fs::File,
    os::{
        fd::{AsFd as _, BorrowedFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use crate::{
    fdpass::send_with_fd,
    protocol::{
        ErrorKind, ErrorReply, FrameError, MAX_REPLY_BYTES, PROTOCOL_VERSION, Reply, ReplyBody,
        ReplyEnvelope, Request, RequestEnvelope, encode, read_body, read_rendered, unseen,
    },
};

pub const DEFAULT_SOCKET: &str = "/run/memmon/memmon.sock";

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "the memmon daemon is not running (no socket at {0}); start it with `systemctl start memmon` or `memmon daemon`"
    )]
    NotRunning(PathBuf),
    #[error("permission denied on {0}: ask an administrator to add you to the socket's group")]
    SocketPermission(PathBuf),
    #[error("cannot connect to {0}: {1}")]
    Connect(PathBuf, std::io::Error),
    #[error("talking to the daemon: {0}")]
    Frame(#[from] FrameError),
    #[error("{}", .0.message)]
    Daemon(ErrorReply),
    #[error(
        "the daemon speaks protocol version {0}, this client {PROTOCOL_VERSION}: upgrade both together"
    )]
    Version(u32),
}

impl ClientError {
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Daemon(e) => Some(e.kind),
            _ => None,
        }
    }
}

pub struct Client {
    stream: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning(path.into())
            }
            std::io::ErrorKind::PermissionDenied => ClientError::SocketPermission(path.into()),
            _ => ClientError::Connect(path.into(), e),
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(120))).ok();
        Ok(Self { stream })
    }

    /// Sends `request` and reads its reply. About one process, a user other
    /// than root first opens its /proc/PID/maps and passes it along: the
    /// kernel's refusal is the daemon's too, in the same words.
    pub fn request(&mut self, request: Request) -> Result<Reply, ClientError> {
        // smaps for --rss: the same kernel rule as maps, and the daemon
        // reads the numbers from the very file the kernel let us open.
        let (pid, file) = match request {
            Request::Query { pid, rss: true, .. } => (Some(pid), "smaps"),
            Request::Query { pid, .. }
            | Request::Verify { pid }
            | Request::Origins { pid, .. }
            | Request::Diff { pid, .. }
            | Request::WxEvents { pid: Some(pid) } => (Some(pid), "maps"),
            Request::Ping
            | Request::List
            | Request::Leaks { .. }
            | Request::WxEvents { pid: None } => (None, "maps"),
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let maps = match pid {
            Some(pid) if !root => Some(
                File::open(format!("/proc/{pid}/{file}"))
                    .map_err(|_| ClientError::Daemon(unseen(pid)))?,
            ),
            _ => None,
        };
        self.request_with_maps(request, maps.as_ref().map(|m| m.as_fd()))
    }

    /// Sends `request` with `maps` (a /proc/PID/maps the caller opened)
    /// passed along, and reads its reply.
    pub fn request_with_maps(
        &mut self,
        request: Request,
        maps: Option<BorrowedFd<'_>>,
    ) -> Result<Reply, ClientError> {
        let frame = encode(&RequestEnvelope {
            version: PROTOCOL_VERSION,
            request,
        })?;
        // The descriptor goes with the first bytes, where the daemon looks.
        let mut sent = send_with_fd(self.stream.as_fd(), &frame, maps).map_err(FrameError::Io)?;
        while sent < frame.len() {
            sent +=
                send_with_fd(self.stream.as_fd(), &frame[sent..], None).map_err(FrameError::Io)?;
        }
        // The version decides before the shape: a newer daemon's replies
        // may not parse here, and "upgrade both" is the useful message.
        // The envelope's decoder reads the version first and skips a body
        // of another version (see protocol::decode); a reply that does not
        // parse is read again, untyped, for its version alone.
        let body = read_body(&mut self.stream, MAX_REPLY_BYTES)?;
        let reply: ReplyEnvelope = match serde_json::from_slice(&body) {
            Ok(reply) => reply,
            Err(err) => {
                let version = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("version")?.as_u64());
                return Err(match version {
                    Some(v) if v != PROTOCOL_VERSION as u64 => ClientError::Version(v as u32),
                    _ => ClientError::Frame(FrameError::Json(err)),
                });
            }
        };
        if reply.version != PROTOCOL_VERSION {
            return Err(ClientError::Version(reply.version));
        }
        match reply.body {
            ReplyBody::Ok(mut reply) => {
                read_rendered(&mut self.stream, &mut reply, MAX_REPLY_BYTES)?;
                Ok(reply)
            }
            ReplyBody::Error(e) => Err(ClientError::Daemon(e)),
        }
    }
}
