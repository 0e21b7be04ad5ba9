//! The daemon's socket protocol by hand: length-prefixed JSON frames.

use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde_json::Value;

pub fn frame(value: &Value) -> Vec<u8> {
    raw_frame(&serde_json::to_vec(value).unwrap())
}

pub fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

pub fn connect(socket: &Path) -> UnixStream {
    let stream = UnixStream::connect(socket).expect("connect to the daemon");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// The next reply frame; None when the daemon closed the connection.
pub fn read_reply(stream: &mut UnixStream) -> Option<Value> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("reading a reply: {e}"),
    }
    let len = u32::from_be_bytes(len);
    assert!(len < 1 << 20, "an error reply of {len} bytes");
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).expect("the reply's body");
    Some(serde_json::from_slice(&body).expect("the reply is JSON"))
}

pub fn exchange(stream: &mut UnixStream, bytes: &[u8]) -> Option<Value> {
    stream.write_all(bytes).expect("send");
    read_reply(stream)
}

pub fn error_kind(reply: &Value) -> &str {
    assert_eq!(reply["version"], 1, "{reply}");
    assert!(
        reply["error"]["message"].is_string(),
        "no error message: {reply}"
    );
    reply["error"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error reply: {reply}"))
}
