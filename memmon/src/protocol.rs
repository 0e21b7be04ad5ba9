//! The query socket's protocol: versioned, length-delimited JSON.
//!
//! Each message is a 4-byte big-endian length followed by that many bytes
//! of JSON. Requests are small and capped at [`MAX_REQUEST_BYTES`]; a
//! longer or malformed one gets an error reply, never a crash.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use thiserror::Error;

mod decode;

use crate::{
    model::compare::Difference,
    report::{
        Layout, ProcessSummary,
        diff::DiffReport,
        origins::{LeaksReport, OriginsReport},
    },
    rules::wx_events::WxEventView,
};

pub const PROTOCOL_VERSION: u32 = 1;
pub const MAX_REQUEST_BYTES: u32 = 64 * 1024;
/// Replies carry whole layouts: 10,000 regions fit comfortably.
pub const MAX_REPLY_BYTES: u32 = 256 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u32,
    pub request: Request,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Ping,
    /// Compare one process's model with /proc/PID/maps now.
    Verify {
        pid: u32,
    },
    /// A summary of every tracked process the peer may see.
    List,
    /// One process's classified layout, with its last `events` events.
    Query {
        pid: u32,
        #[serde(default)]
        events: usize,
        /// Also read /proc/PID/smaps (Rss, Pss, Swap, ... per region). A
        /// non-root client then passes its /proc/PID/smaps, not maps.
        #[serde(default)]
        rss: bool,
        /// Also each region's origin: the call that made it, and the last
        /// that changed it.
        #[serde(default)]
        origins: bool,
        /// Have the daemon render the layout, answered
        /// [`Reply::Rendered`]; only without `rss` and `origins`. A daemon
        /// that does not know this field answers [`Reply::Layout`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        render: Option<Render>,
    },
    /// One process's outstanding mapped memory by call site, with the
    /// growth over the last `window_ms`.
    Origins {
        pid: u32,
        window_ms: u64,
    },
    /// Every visible process's call sites whose memory grew steadily by at
    /// least `min_growth` bytes over the last `window_ms`.
    Leaks {
        window_ms: u64,
        min_growth: u64,
    },
    /// What changed in one process's layout in the last `since_ms`.
    Diff {
        pid: u32,
        since_ms: u64,
    },
    /// Recent W^X transitions of one process, or of every process the
    /// peer may see.
    WxEvents {
        #[serde(default)]
        pid: Option<u32>,
    },
}

/// What a rendered layout looks like: what `memmon query` prints. The
/// daemon renders it once per model version for every client that asks,
/// and each client copies it out; decoding a 20,000-region layout and
/// rendering it again in every client took longer than `pmap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Render {
    /// The layout as pretty-printed JSON, with a final newline.
    Json,
    /// The table, plain.
    Text,
    /// The table with ANSI colors, for a terminal.
    TextColor,
}

/// Decoded by hand (see `decode`), encoded as derived.
#[derive(Clone, Debug, Serialize)]
pub struct ReplyEnvelope {
    pub version: u32,
    #[serde(flatten)]
    pub body: ReplyBody,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyBody {
    Ok(Reply),
    Error(ErrorReply),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Pong {
        daemon_pid: u32,
        tracked_processes: usize,
        version: String,
    },
    Verify(VerifyReport),
    Layout(Box<Layout>),
    Processes {
        processes: Vec<ProcessSummary>,
        /// vm.max_map_count, the most VMAs a process may have.
        #[serde(default)]
        max_map_count: Option<u64>,
    },
    Origins(OriginsReport),
    Leaks(LeaksReport),
    Diff(DiffReport),
    WxEvents {
        /// The daemon's CLOCK_MONOTONIC now, in ns: events' ages are
        /// measured from it.
        now_ns: u64,
        /// Oldest first.
        events: Vec<WxEventView>,
    },
    /// A layout rendered as asked ([`Request::Query`]'s `render`): its
    /// `len` bytes follow the frame raw, not as JSON (escaping a JSON
    /// text inside JSON would double its cost). [`read_rendered`] reads
    /// them into `bytes`.
    Rendered {
        len: u64,
        #[serde(skip)]
        bytes: Vec<u8>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyReport {
    pub pid: u32,
    /// /proc/PID/stat start time: with the pid, which process was compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_ticks: Option<u64>,
    pub comm: String,
    pub agree: bool,
    pub model_regions: usize,
    pub kernel_regions: usize,
    pub differences: Vec<Difference>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    BadRequest,
    VersionMismatch,
    TooLarge,
    NoSuchPid,
    PermissionDenied,
    NotReady,
    Internal,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

/// The one answer for a process that does not exist, is not a process
/// (a thread id), or is not the asker's to inspect: the same kind and text
/// for all, so that the answer tells no one which pids exist.
pub fn unseen(pid: u32) -> ErrorReply {
    ErrorReply {
        kind: ErrorKind::NoSuchPid,
        message: format!(
            "pid {pid}: no such process, or no permission to inspect it \
             (the kernel refused /proc/{pid}/maps)"
        ),
    }
}

impl ReplyEnvelope {
    pub fn ok(reply: Reply) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            body: ReplyBody::Ok(reply),
        }
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            body: ReplyBody::Error(ErrorReply {
                kind,
                message: message.into(),
            }),
        }
    }
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Encodes `value` as one frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(value)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: u32::MAX,
        max: MAX_REPLY_BYTES,
    })?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Parses a request body, checking the version before the content so that
/// a client from another release gets a version error, not a parse error.
pub fn decode_request(body: &[u8]) -> Result<Request, ReplyEnvelope> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ReplyEnvelope::error(ErrorKind::BadRequest, format!("request is not JSON: {e}"))
    })?;
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == PROTOCOL_VERSION as u64 => {}
        Some(v) => {
            return Err(ReplyEnvelope::error(
                ErrorKind::VersionMismatch,
                format!(
                    "client speaks protocol version {v}, this daemon speaks {PROTOCOL_VERSION}"
                ),
            ));
        }
        None => {
            return Err(ReplyEnvelope::error(
                ErrorKind::BadRequest,
                "request has no numeric `version`",
            ));
        }
    }
    serde_json::from_value::<RequestEnvelope>(value)
        .map(|e| e.request)
        .map_err(|e| ReplyEnvelope::error(ErrorKind::BadRequest, format!("bad request: {e}")))
}

/// A rendered reply as sent: the frame of its envelope, then the bytes.
pub fn encode_rendered(bytes: &[u8]) -> Result<Vec<u8>, FrameError> {
    let envelope = ReplyEnvelope::ok(Reply::Rendered {
        len: bytes.len() as u64,
        bytes: Vec::new(),
    });
    let mut frame = encode(&envelope)?;
    frame.extend_from_slice(bytes);
    Ok(frame)
}

/// Reads the raw bytes that follow a [`Reply::Rendered`] frame into it;
/// other replies are left alone.
pub fn read_rendered<R: Read>(
    reader: &mut R,
    reply: &mut Reply,
    max: u32,
) -> Result<(), FrameError> {
    if let Reply::Rendered { len, bytes } = reply {
        let len = u32::try_from(*len).unwrap_or(u32::MAX);
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        *bytes = vec![0u8; len as usize];
        reader.read_exact(bytes)?;
    }
    Ok(())
}

/// Blocking read of one frame (used by the CLI client).
pub fn read_frame<R: Read, T: DeserializeOwned>(reader: &mut R, max: u32) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(&read_body(reader, max)?)?)
}

/// Blocking read of one frame's body, undecoded.
pub fn read_body<R: Read>(reader: &mut R, max: u32) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body)?;
    Ok(body)
}

pub fn write_frame<W: Write, T: Serialize>(writer: &mut W, value: &T) -> Result<(), FrameError> {
    writer.write_all(&encode(value)?)?;
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let env = RequestEnvelope {
            version: PROTOCOL_VERSION,
            request: Request::Verify { pid: 42 },
        };
        let frame = encode(&env).unwrap();
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        assert_eq!(
            decode_request(&frame[4..]).unwrap(),
            Request::Verify { pid: 42 }
        );
        let back: RequestEnvelope = read_frame(&mut &frame[..], MAX_REQUEST_BYTES).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn garbage_and_versions_get_typed_errors() {
        let kind = |body: &[u8]| match decode_request(body) {
            Err(ReplyEnvelope {
                body: ReplyBody::Error(e),
                ..
            }) => e.kind,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(kind(b"\xff\x00garbage"), ErrorKind::BadRequest);
        assert_eq!(
            kind(br#"{"request":{"type":"ping"}}"#),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(br#"{"version":99,"request":{"type":"ping"}}"#),
            ErrorKind::VersionMismatch
        );
        assert_eq!(
            kind(br#"{"version":1,"request":{"type":"launch_missiles"}}"#),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(br#"{"version":1,"request":{"type":"verify","pid":-1}}"#),
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn rendered_bytes_follow_their_frame_raw() {
        let text = b"pid 1 \"x\"\n\x1b[1m START\x1b[0m\n";
        let mut sent = encode_rendered(text).unwrap();
        sent.extend_from_slice(b"next");
        let mut stream = &sent[..];
        let body = read_body(&mut stream, MAX_REPLY_BYTES).unwrap();
        let envelope: ReplyEnvelope = serde_json::from_slice(&body).unwrap();
        let ReplyBody::Ok(mut reply) = envelope.body else {
            panic!("not ok: {envelope:?}");
        };
        read_rendered(&mut stream, &mut reply, MAX_REPLY_BYTES).unwrap();
        assert!(
            matches!(&reply, Reply::Rendered { len, bytes } if *len == text.len() as u64 && bytes == text)
        );
        assert_eq!(stream, b"next", "exactly the rendered bytes were read");
        let mut small = Reply::Rendered {
            len: 100,
            bytes: vec![],
        };
        assert!(matches!(
            read_rendered(&mut &[0u8; 100][..], &mut small, 99),
            Err(FrameError::TooLarge { len: 100, max: 99 })
        ));
    }

    #[test]
    fn oversized_frames_are_refused_before_allocation() {
        let frame = [0xff, 0xff, 0xff, 0xff];
        let got: Result<RequestEnvelope, _> = read_frame(&mut &frame[..], MAX_REQUEST_BYTES);
        assert!(matches!(got, Err(FrameError::TooLarge { .. })));
    }

    proptest::proptest! {
        #[test]
        fn decode_request_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode_request(&body);
        }
    }

    // ---- fuzzing: `cargo xtask fuzz` runs these with many more cases ------

    use proptest::prelude::*;

    fn request_strategy() -> impl Strategy<Value = Request> {
        prop_oneof![
            Just(Request::Ping),
            Just(Request::List),
            any::<u32>().prop_map(|pid| Request::Verify { pid }),
            (any::<u32>(), any::<usize>(), any::<bool>()).prop_map(|(pid, events, rss)| {
                Request::Query {
                    pid,
                    events,
                    rss,
                    origins: false,
                    render: None,
                }
            }),
            proptest::option::of(any::<u32>()).prop_map(|pid| Request::WxEvents { pid }),
        ]
    }

    /// Arbitrary JSON: what a hostile client may put in any field.
    fn json_strategy() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z_]{0,12}".prop_map(Value::from),
            proptest::sample::select(vec!["ping", "verify", "list", "query", "Ping", ""])
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A field-level edit of a valid request object.
    #[derive(Clone, Debug)]
    enum Edit {
        Set(Vec<String>, serde_json::Value),
        Remove(Vec<String>),
    }

    fn edit_strategy() -> impl Strategy<Value = Edit> {
        let path = proptest::collection::vec(
            proptest::sample::select(vec!["version", "request", "type", "pid", "events", "extra"])
                .prop_map(String::from),
            1..3,
        );
        prop_oneof![
            (path.clone(), json_strategy()).prop_map(|(p, v)| Edit::Set(p, v)),
            path.prop_map(Edit::Remove),
        ]
    }

    fn apply(value: &mut serde_json::Value, edit: &Edit) {
        let (path, set) = match edit {
            Edit::Set(p, v) => (p, Some(v)),
            Edit::Remove(p) => (p, None),
        };
        let (last, parents) = path.split_last().expect("non-empty path");
        let mut at = value;
        for key in parents {
            match at.get_mut(key.as_str()) {
                Some(next) => at = next,
                None => return,
            }
        }
        if let Some(map) = at.as_object_mut() {
            match set {
                Some(v) => {
                    map.insert(last.clone(), v.clone());
                }
                None => {
                    map.remove(last.as_str());
                }
            }
        }
    }

    /// The daemon's whole path for one body: no panic, a typed answer, and
    /// whatever is accepted means what it says when encoded again.
    fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
        match decode_request(body) {
            Ok(request) => {
                let again = encode(&RequestEnvelope {
                    version: PROTOCOL_VERSION,
                    request: request.clone(),
                })
                .unwrap();
                prop_assert_eq!(decode_request(&again[4..]).unwrap(), request);
            }
            Err(reply) => {
                prop_assert!(matches!(reply.body, ReplyBody::Error(_)));
                // A reply to garbage stays about as small as the garbage.
                prop_assert!(encode(&reply).unwrap().len() <= 2 * body.len() + 1024);
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn fuzz_valid_requests_decode_exactly(request in request_strategy()) {
            let frame = encode(&RequestEnvelope { version: PROTOCOL_VERSION, request: request.clone() }).unwrap();
            prop_assert_eq!(decode_request(&frame[4..]).unwrap(), request);
        }

        #[test]
        fn fuzz_field_mutated_requests(request in request_strategy(),
                                       edits in proptest::collection::vec(edit_strategy(), 1..4)) {
            let mut value = serde_json::to_value(RequestEnvelope { version: PROTOCOL_VERSION, request }).unwrap();
            for edit in &edits {
                apply(&mut value, edit);
            }
            check_body(&serde_json::to_vec(&value).unwrap())?;
        }

        #[test]
        fn fuzz_byte_mutated_requests(request in request_strategy(),
                                      edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6)) {
            let frame = encode(&RequestEnvelope { version: PROTOCOL_VERSION, request }).unwrap();
            let mut body = frame[4..].to_vec();
            for (at, byte, op) in edits {
                let n = body.len() + 1;
                match op {
                    0 => body.insert(at % n, byte),
                    1 if !body.is_empty() => { let len = body.len(); body.remove(at % len); }
                    _ if !body.is_empty() => { let len = body.len(); body[at % len] = byte; }
                    _ => {}
                }
            }
            check_body(&body)?;
        }

        #[test]
        fn fuzz_deeply_nested_and_huge_bodies(depth in 0usize..20_000, open in "[\\[{]", digits in 0usize..5000) {
            // serde_json's recursion limit must turn deep nesting into an
            // error, not a stack overflow.
            let close = if open == "[" { "]" } else { "}" };
            let key = if open == "{" { "\"a\":" } else { "" };
            let mut body = format!("{{\"version\":1,\"request\":{{\"type\":\"verify\",\"pid\":{}", "9".repeat(digits.max(1)));
            body.push_str(",\"x\":");
            for _ in 0..depth { body.push_str(&open); body.push_str(key); }
            body.push('1');
            for _ in 0..depth { body.push_str(close); }
            body.push_str("}}");
            check_body(body.as_bytes())?;
        }

        #[test]
        fn fuzz_read_frame(stream in proptest::collection::vec(any::<u8>(), 0..512), len in any::<u32>(), use_len in any::<bool>()) {
            // A hostile length prefix is refused before any allocation.
            let mut bytes = stream;
            if use_len {
                bytes.splice(0..bytes.len().min(4), len.to_be_bytes());
            }
            let got: Result<RequestEnvelope, FrameError> = read_frame(&mut bytes.as_slice(), MAX_REQUEST_BYTES);
            if bytes.len() >= 4 {
                let prefix = u32::from_be_bytes(bytes[..4].try_into().unwrap());
                if prefix > MAX_REQUEST_BYTES {
                    prop_assert!(
                        matches!(got, Err(FrameError::TooLarge { .. })),
                        "a {} byte prefix was not refused",
                        prefix
                    );
                }
            }
        }
    }
}
