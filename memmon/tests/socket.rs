//! The daemon's socket from both sides: it survives abusive clients and
//! keeps serving the others, and a client facing no daemon, a daemon of
//! another protocol version or a garbled reply says so in one line.
//!
//! Run as root: `cargo test -p memmon --test socket` (the tests without a
//! daemon run anywhere).

mod support;

use std::{
    fs,
    io::{Read as _, Write as _},
    net::Shutdown,
    os::unix::net::{UnixListener, UnixStream},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{
    Daemon, QueryMe, TempDir, connect, error_kind, exchange, frame, free_pid, memmon, query_json,
    raw_frame, read_reply, require_bpf,
};

#[test]
fn the_socket_survives_abuse_and_keeps_serving_others() {
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::start();
    let socket = daemon.socket().to_owned();
    let QueryMe { run, dir: _dir, .. } = QueryMe::start(&daemon, "abuse");
    let pid = run.pid;
    let query_works = |when: &str| {
        let layout = query_json(None, &socket, pid, &[]);
        assert_eq!(layout["pid"], pid, "query {when}");
    };

    // A client that sends half a frame and then nothing: it must not hold
    // up anyone else, and gets its error once the daemon gives up on it.
    let mut stalled = connect(&socket);
    stalled.write_all(&100u32.to_be_bytes()).unwrap();
    stalled.write_all(b"{\"version\"").unwrap();
    let stalled_since = Instant::now();
    // Idle connections that never send a byte.
    let idle: Vec<UnixStream> = (0..64).map(|_| connect(&socket)).collect();
    query_works("with a stalled client and 64 idle ones");

    // (a) garbage with a valid length prefix; the connection stays usable.
    let mut s = connect(&socket);
    let reply = exchange(&mut s, &raw_frame(b"\xff\x00\x13garbage\x00")).expect("a reply");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 1, "request": {"type": "ping"}})),
    )
    .expect("a reply to ping after garbage");
    assert_eq!(reply["ok"]["type"], "pong", "{reply}");
    // Valid JSON, but not a request.
    let reply = exchange(&mut s, &raw_frame(b"[1,2,3]")).expect("a reply");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    let reply = exchange(&mut s, &raw_frame(b"")).expect("a reply to an empty frame");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");

    // (b) a header claiming 4 GiB: refused before any allocation, then closed.
    let mut s = connect(&socket);
    let reply = exchange(&mut s, &u32::MAX.to_be_bytes()).expect("a reply");
    assert_eq!(error_kind(&reply), "too_large", "{reply}");
    let mut s = connect(&socket);
    let reply = exchange(&mut s, &(64 * 1024 + 1u32).to_be_bytes()).expect("a reply");
    assert_eq!(error_kind(&reply), "too_large", "{reply}");

    // (c) a truncated frame, then the writer closes: an error reply or a
    // plain close are both fine; a crash is not.
    let mut s = connect(&socket);
    s.write_all(&50u32.to_be_bytes()).unwrap();
    s.write_all(b"{\"version\":1,").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    if let Some(reply) = read_reply(&mut s) {
        assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    }
    // And one that closes mid-header.
    let mut s = connect(&socket);
    s.write_all(&[0, 0]).unwrap();
    drop(s);

    // (d) a wrong version.
    let mut s = connect(&socket);
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 2, "request": {"type": "query", "pid": pid}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "version_mismatch", "{reply}");
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 0, "request": {"type": "ping"}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "version_mismatch", "{reply}");

    // (e) an unknown request type, and a known one with bad fields.
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 1, "request": {"type": "launch_missiles"}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 1, "request": {"type": "query", "pid": -1}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 1, "request": {"type": "query", "pid": free_pid()}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "no_such_pid", "{reply}");

    query_works("after the abuse");

    // The stalled client gets its answer once the daemon gives up on it.
    let reply = read_reply(&mut stalled);
    if let Some(reply) = reply {
        assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    }
    assert!(
        stalled_since.elapsed() < Duration::from_secs(30),
        "the stalled client was held for {:?}",
        stalled_since.elapsed()
    );
    drop(idle);

    thread::sleep(Duration::from_millis(200));
    assert!(daemon.alive(), "the daemon died: {:?}", daemon.stderr());
    query_works("at the end");
    run.resume_and_finish();
}

// ---- the client against no daemon, or a foreign one ---------------------------

#[test]
fn without_a_daemon_every_client_says_how_to_start_it() {
    let dir = TempDir::new("nodaemon");
    let socket = dir.path().join("no-such.sock");
    for args in [
        &["query", "1"][..],
        &["query", "1", "--json"],
        &["verify", "1"],
        &["ps"],
        &["ps", "--json"],
        &["aslr"],
        &["wx"],
    ] {
        let err = memmon(None, &socket, args).one_line_error();
        assert!(
            err.contains("not running") && err.contains("memmon daemon"),
            "`memmon {}`: {err}",
            args.join(" ")
        );
    }
}

/// A fake daemon on `socket` that answers one request with `reply`.
fn fake_daemon(socket: &Path, reply: Vec<u8>) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).expect("bind a fake daemon");
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).unwrap();
        let _ = stream.write_all(&reply);
    })
}

#[test]
fn a_daemon_of_another_protocol_version_is_one_clear_line() {
    let dir = TempDir::new("v2");
    // A future daemon's replies: a typed error, and a reply this client
    // cannot parse. Either way the client must say "version", not
    // "malformed message".
    for reply in [
        json!({"version": 2, "error": {"kind": "version_mismatch", "message": "client speaks 1, daemon 2"}}),
        json!({"version": 2, "ok": {"type": "layout_v2", "regions": []}}),
    ] {
        let socket = dir.path().join("fake.sock");
        let _ = fs::remove_file(&socket);
        let server = fake_daemon(&socket, frame(&reply));
        let err = memmon(None, &socket, &["query", "1", "--json"]).one_line_error();
        server.join().unwrap();
        assert!(err.contains("version"), "reply {reply}: {err}");
    }
}

#[test]
fn an_oversized_or_garbled_reply_is_one_line() {
    let dir = TempDir::new("garbled");
    for reply in [u32::MAX.to_be_bytes().to_vec(), raw_frame(b"\x00not json")] {
        let socket = dir.path().join("fake.sock");
        let _ = fs::remove_file(&socket);
        let server = fake_daemon(&socket, reply);
        memmon(None, &socket, &["query", "1", "--json"]).one_line_error();
        server.join().unwrap();
    }
}
