//! The two renderings of an event: the strace-like line of `memmon trace`
//! and one JSON object per event for `--json`. Both walk one typed view
//! ([`View`]), built by the only per-kind match here.

use std::fmt::{self, Display, Write as _};

use serde::Serialize;
use serde_json::Value;

use super::{
    Event, EventBody, Syscall, errno_name, mmap_flags_string, mremap_flags_string, prot_string,
};

impl Event {
    /// One line in the style of strace: `mmap  pid=.. tid=.. comm=.. args -> result`.
    pub fn to_line(&self) -> String {
        self.view().line()
    }

    /// One JSON object: `kind`, `pid`, `tid`, `comm`, `ts_ns`, then the
    /// kind's own fields. Addresses are `"0x…"` strings, numbers otherwise.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.view()).expect("plain fields serialize")
    }

    /// Writes [`Event::to_json`]'s object without building it in memory:
    /// `memmon trace --json` prints hundreds of thousands per second.
    pub fn write_json<W: std::io::Write>(&self, out: W) -> serde_json::Result<()> {
        serde_json::to_writer(out, &self.view())
    }

    /// A fork that added a thread to the parent's process (not a new process).
    fn forked_thread(&self) -> Option<bool> {
        match self.body {
            EventBody::Fork {
                child_pid,
                child_tid,
                ..
            } => Some(child_pid == self.meta.pid && child_tid != child_pid),
            _ => None,
        }
    }

    fn view(&self) -> View<'_> {
        let m = &self.meta;
        let mut v = View {
            kind: self.kind(),
            pid: m.pid,
            tid: m.tid,
            comm: m.comm,
            ts_ns: m.ts_ns,
            call_site: (m.call_site != 0).then_some(Hex(m.call_site)),
            stack_id: m.stack_id,
            ..View::default()
        };
        match &self.body {
            EventBody::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                offset,
                file,
                ..
            } => {
                v.range(*addr, Some(*len));
                v.prot(*prot);
                v.flags = Some(*flags);
                v.flags_str = Some(Shown::MmapFlags(*flags));
                v.fd = Some(*fd);
                v.offset = Some(*offset);
                v.path = file.as_ref().and_then(|f| f.path.as_deref());
            }
            EventBody::Munmap { addr, len, .. } => v.range(*addr, Some(*len)),
            EventBody::Brk { addr, .. } | EventBody::Shmdt { addr, .. } => v.range(*addr, None),
            EventBody::IoSetup {
                nr_events, ring, ..
            } => {
                v.nr_events = Some(*nr_events);
                v.range(*ring, None);
            }
            EventBody::IoDestroy { ring, .. } => v.range(*ring, None),
            EventBody::RemapFilePages {
                start,
                size,
                pgoff,
                flags,
                ..
            } => {
                v.range(*start, Some(*size));
                v.pgoff = Some(*pgoff);
                v.flags = Some(*flags);
            }
            EventBody::Mprotect {
                addr,
                len,
                prot,
                pkey,
                ..
            } => {
                v.range(*addr, Some(*len));
                v.prot(*prot);
                v.pkey = *pkey;
            }
            EventBody::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
                ..
            } => {
                v.old_addr = Some(Hex(*old_addr));
                v.old_len = Some(*old_len);
                v.new_len = Some(*new_len);
                v.flags = Some(*flags);
                v.flags_str = Some(Shown::MremapFlags(*flags));
                v.new_addr = Some(Hex(*new_addr));
            }
            EventBody::Shmat {
                shmid, addr, flags, ..
            } => {
                v.shmid = Some(*shmid);
                v.range(*addr, None);
                v.flags = Some(*flags);
            }
            EventBody::VmaName {
                addr, len, name, ..
            } => {
                v.range(*addr, Some(*len));
                v.name = Some(name.as_deref());
            }
            EventBody::Exec { filename, old_tid } => {
                v.filename = Some(filename);
                v.old_tid = Some(*old_tid);
            }
            EventBody::Fork {
                child_pid,
                child_tid,
                clone_flags,
            } => {
                v.child_pid = Some(*child_pid);
                v.child_tid = Some(*child_tid);
                v.clone_flags = Some(*clone_flags);
            }
            EventBody::Exit { group_dead } => v.group_dead = Some(*group_dead),
        }
        v.thread = self.forked_thread();
        let address = self.syscall().is_some_and(Syscall::returns_address);
        v.ret = self.result().map(|ret| match ret {
            0.. if address => Ret::Address(Hex(ret as u64)),
            _ => Ret::Number(ret),
        });
        v.errno = self
            .result()
            .filter(|r| *r < 0)
            .and_then(|r| errno_name(r.saturating_neg()));
        v
    }
}

/// An address: `0x…` in text, the same as a JSON string, without a heap
/// allocation.
#[derive(Clone, Copy, Debug, Default)]
struct Hex(u64);

impl Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A syscall result: an address in hex, or a plain number (0, -errno).
#[derive(Clone, Copy, Debug)]
enum Ret {
    Address(Hex),
    Number(i64),
}

impl Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ret::Address(a) => a.fmt(f),
            Ret::Number(n) => n.fmt(f),
        }
    }
}

impl Serialize for Ret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ret::Address(a) => a.serialize(s),
            Ret::Number(n) => s.serialize_i64(*n),
        }
    }
}

/// Flag words in words (`RW-`, `PRIVATE|ANONYMOUS`).
#[derive(Clone, Copy, Debug)]
enum Shown {
    Prot(u64),
    MmapFlags(u64),
    MremapFlags(u64),
}

impl Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&match *self {
            Shown::Prot(p) => prot_string(p),
            Shown::MmapFlags(flags) => mmap_flags_string(flags),
            Shown::MremapFlags(flags) => mremap_flags_string(flags),
        })
    }
}

impl Serialize for Shown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An event's fields, typed: serialized as is for JSON (absent fields are
/// left out, in this order) and walked by [`View::line`] for text.
#[derive(Default, Serialize)]
struct View<'a> {
    kind: &'static str,
    pid: u32,
    tid: u32,
    comm: super::Comm,
    ts_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    shmid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_addr: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    len: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_len: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_len: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prot: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prot_str: Option<Shown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pkey: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<u64>,
    /// Absent for flags shown in hex (shmat's).
    #[serde(skip_serializing_if = "Option::is_none")]
    flags_str: Option<Shown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    /// A mapped file's path, as the kernel programs read it at the mmap.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    /// remap_file_pages' offset, in pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pgoff: Option<u64>,
    /// io_setup's request count (the ring is `addr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    nr_events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_addr: Option<Hex>,
    /// `Some(None)` is a cleared name: `"name": null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    child_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    child_tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clone_flags: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_dead: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ret: Option<Ret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<&'static str>,
    /// The user return address into the libc wrapper's caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    call_site: Option<Hex>,
    /// The user stack's id in the kernel's stack map (`stacks = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    stack_id: Option<u32>,
}

/// Appends ` name=value` when the view has the field.
fn field(out: &mut String, name: &str, value: Option<impl Display>) {
    if let Some(value) = value {
        let _ = write!(out, " {name}={value}");
    }
}

impl View<'_> {
    fn range(&mut self, addr: u64, len: Option<u64>) {
        self.addr = Some(Hex(addr));
        self.len = len;
    }

    fn prot(&mut self, prot: u64) {
        self.prot = Some(prot);
        self.prot_str = Some(Shown::Prot(prot));
    }

    /// The text line: the fields in JSON's order (except that fork says
    /// thread or process before its flags), numbers in words where JSON
    /// has a `_str` twin, then `-> result`.
    fn line(&self) -> String {
        let mut out = format!(
            "{:<5} pid={} tid={} comm={}",
            self.kind, self.pid, self.tid, self.comm
        );
        let o = &mut out;
        field(o, "shmid", self.shmid);
        field(o, "addr", self.addr);
        field(o, "old_addr", self.old_addr);
        field(o, "len", self.len);
        field(o, "old_len", self.old_len);
        field(o, "new_len", self.new_len);
        field(o, "prot", self.prot_str);
        field(o, "pkey", self.pkey);
        match self.flags_str {
            Some(shown) => field(o, "flags", Some(shown)),
            None => field(o, "flags", self.flags.map(Hex)),
        }
        field(o, "fd", self.fd);
        field(o, "off", self.offset);
        field(o, "path", self.path.map(|p| format!("{p:?}")));
        field(o, "pgoff", self.pgoff);
        field(o, "nr_events", self.nr_events);
        field(o, "new_addr", self.new_addr);
        field(
            o,
            "name",
            self.name.map(|n| match n {
                Some(name) => format!("{name:?}"),
                None => "NULL".into(),
            }),
        );
        field(o, "filename", self.filename.map(|f| format!("{f:?}")));
        field(o, "old_tid", self.old_tid);
        field(o, "child_pid", self.child_pid);
        field(o, "child_tid", self.child_tid);
        if let Some(thread) = self.thread {
            o.push_str(if thread { " thread" } else { " process" });
        }
        field(o, "clone_flags", self.clone_flags.map(Hex));
        field(o, "group_dead", self.group_dead);
        if let Some(ret) = self.ret {
            let _ = write!(o, " -> {ret}");
            if let Some(errno) = self.errno {
                let _ = write!(o, " ({errno})");
            }
        }
        field(o, "from", self.call_site);
        field(o, "stack", self.stack_id);
        out
    }
}
