//! W^X transitions as the protocol carries them to `memmon wx --events`.

use serde::{Deserialize, Serialize};

use super::{WxEvent, WxKind};
use crate::report::{hex, origins::CallSiteView, parse_hex};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxEventView {
    pub pid: u32,
    pub comm: String,
    /// The process's real uid, when known.
    #[serde(default)]
    pub uid: Option<u32>,
    pub kind: WxKind,
    /// The syscall that made it (`mmap`, `mprotect`, ...).
    pub syscall: String,
    /// CLOCK_MONOTONIC ns of the syscall.
    pub ts_ns: u64,
    pub tid: u32,
    /// `"0x…"`, as in layouts.
    pub start: String,
    pub end: String,
    pub bytes: u64,
    /// `rwxp`-style; None for new memory.
    pub old: Option<String>,
    pub new: String,
    /// Named by the daemon's symbolizer when it is asked for.
    pub call_site: Option<CallSiteView>,
}

impl WxEventView {
    pub fn kind_label(&self) -> &'static str {
        self.kind.label()
    }

    /// `start` and `end` as numbers (0 when malformed).
    pub fn range(&self) -> (u64, u64) {
        let n = |s: &str| parse_hex(s).unwrap_or(0);
        (n(&self.start), n(&self.end))
    }

    pub fn new(pid: u32, comm: &str, uid: Option<u32>, event: &WxEvent) -> Self {
        let (t, o) = (&event.transition, &event.origin);
        Self {
            pid,
            comm: comm.to_owned(),
            uid,
            kind: t.kind,
            syscall: o.cause.name().to_owned(),
            ts_ns: o.ts_ns,
            tid: o.tid,
            start: hex(t.start),
            end: hex(t.end),
            bytes: t.bytes,
            old: t.old.map(|p| p.to_string()),
            new: t.new.to_string(),
            call_site: o.call_site.as_ref().map(|c| CallSiteView::of(c, None)),
        }
    }
}
