//! W^X transitions as the protocol carries them to `memmon wx --events`.

use serde::{Deserialize, Serialize};

use super::{WxEvent, WxKind};
use crate::report::{hex, parse_hex};

/// A call site as `object+0xoffset`, ready for a symbol. Addresses and
/// offsets are `"0x…"`, as in layouts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxCallSite {
    pub addr: String,
    /// The file holding the code, as /proc names it; None for anonymous
    /// memory (JIT'd code calling mprotect itself).
    pub object: Option<String>,
    /// Offset in `object`'s file (the address itself when there is none).
    pub offset: String,
    /// The function, once a symbolizer has named it; None until then.
    #[serde(default)]
    pub symbol: Option<String>,
}

impl WxCallSite {
    /// `object+0xoffset` (the file name only), or the bare address, with
    /// the symbol in front when known.
    pub fn display(&self) -> String {
        let place = match &self.object {
            Some(path) => {
                let name = path.rsplit('/').next().unwrap_or(path);
                format!("{name}+{}", self.offset)
            }
            None => self.addr.clone(),
        };
        match &self.symbol {
            Some(symbol) => format!("{symbol} ({place})"),
            None => place,
        }
    }
}

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
    pub call_site: Option<WxCallSite>,
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
            call_site: o.call_site.as_ref().map(|c| WxCallSite {
                addr: hex(c.addr),
                object: c.object.as_deref().map(str::to_owned),
                offset: hex(c.offset),
                symbol: None,
            }),
        }
    }
}
