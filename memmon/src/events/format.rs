//! The two renderings of an event: the strace-like line of `memmon trace`
//! and one JSON object per event for `--json`.

use serde::Serialize;
use serde_json::Value;

use super::{Event, EventBody, errno_name, mmap_flags_string, mremap_flags_string, prot_string};

fn hex(value: u64) -> String {
    format!("{value:#x}")
}

/// `-> 0x7f..` for addresses, `-> 0` for plain results, `-> -12 (ENOMEM)`.
fn result_text(ret: i64, address: bool) -> String {
    if ret < 0 {
        match errno_name(ret.saturating_neg()) {
            Some(name) => format!("{ret} ({name})"),
            None => ret.to_string(),
        }
    } else if address {
        hex(ret as u64)
    } else {
        ret.to_string()
    }
}

impl Event {
    /// One line in the style of strace: `mmap  pid=.. tid=.. comm=.. args -> result`.
    pub fn to_line(&self) -> String {
        let m = &self.meta;
        let args = match &self.body {
            EventBody::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                offset,
                ret,
            } => format!(
                "addr={} len={len} prot={} flags={} fd={fd} off={offset} -> {}",
                hex(*addr),
                prot_string(*prot),
                mmap_flags_string(*flags),
                result_text(*ret, true)
            ),
            EventBody::Munmap { addr, len, ret } => {
                format!(
                    "addr={} len={len} -> {}",
                    hex(*addr),
                    result_text(*ret, false)
                )
            }
            EventBody::Brk { addr, ret } => {
                format!("addr={} -> {}", hex(*addr), result_text(*ret, true))
            }
            EventBody::Mprotect {
                addr,
                len,
                prot,
                pkey,
                ret,
            } => format!(
                "addr={} len={len} prot={}{} -> {}",
                hex(*addr),
                prot_string(*prot),
                pkey.map(|k| format!(" pkey={k}")).unwrap_or_default(),
                result_text(*ret, false)
            ),
            EventBody::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
                ret,
            } => format!(
                "old_addr={} old_len={old_len} new_len={new_len} flags={} new_addr={} -> {}",
                hex(*old_addr),
                mremap_flags_string(*flags),
                hex(*new_addr),
                result_text(*ret, true)
            ),
            EventBody::Shmat {
                shmid,
                addr,
                flags,
                ret,
            } => format!(
                "shmid={shmid} addr={} flags={flags:#x} -> {}",
                hex(*addr),
                result_text(*ret, true)
            ),
            EventBody::Shmdt { addr, ret } => {
                format!("addr={} -> {}", hex(*addr), result_text(*ret, false))
            }
            EventBody::VmaName {
                addr,
                len,
                name,
                ret,
            } => format!(
                "addr={} len={len} name={} -> {}",
                hex(*addr),
                name.as_deref()
                    .map(|n| format!("{n:?}"))
                    .unwrap_or_else(|| "NULL".into()),
                result_text(*ret, false)
            ),
            EventBody::Exec { filename, old_tid } => {
                format!("filename={filename:?} old_tid={old_tid}")
            }
            EventBody::Fork {
                child_pid,
                child_tid,
                clone_flags,
            } => format!(
                "child_pid={child_pid} child_tid={child_tid} {}",
                if *child_pid == m.pid && *child_tid != *child_pid {
                    format!("thread clone_flags={clone_flags:#x}")
                } else {
                    format!("process clone_flags={clone_flags:#x}")
                }
            ),
            EventBody::Exit { group_dead } => {
                if *group_dead {
                    "group_dead=true".into()
                } else {
                    "group_dead=false".into()
                }
            }
        };
        format!(
            "{:<5} pid={} tid={} comm={} {args}",
            self.kind(),
            m.pid,
            m.tid,
            m.comm
        )
    }

    /// One JSON object: `kind`, `pid`, `tid`, `comm`, `ts_ns`, then the
    /// kind's own fields. Addresses are `"0x…"` strings, numbers otherwise.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.json_view()).expect("plain fields serialize")
    }

    /// Writes [`Event::to_json`]'s object without building it in memory:
    /// `memmon trace --json` prints hundreds of thousands per second.
    pub fn write_json<W: std::io::Write>(&self, out: W) -> serde_json::Result<()> {
        serde_json::to_writer(out, &self.json_view())
    }

    fn json_view(&self) -> JsonEvent<'_> {
        let m = &self.meta;
        let mut j = JsonEvent {
            kind: self.kind(),
            pid: m.pid,
            tid: m.tid,
            comm: &m.comm,
            ts_ns: m.ts_ns,
            ..JsonEvent::default()
        };
        let address_result = |ret: i64| {
            if ret >= 0 {
                JsonRet::Address(Hex(ret as u64))
            } else {
                JsonRet::Number(ret)
            }
        };
        match &self.body {
            EventBody::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                offset,
                ret,
            } => {
                j.addr = Some(Hex(*addr));
                j.len = Some(*len);
                j.prot = Some(*prot);
                j.prot_str = Some(Shown::Prot(*prot));
                j.flags = Some(*flags);
                j.flags_str = Some(Shown::MmapFlags(*flags));
                j.fd = Some(*fd);
                j.offset = Some(*offset);
                j.ret = Some(address_result(*ret));
            }
            EventBody::Munmap { addr, len, ret } => {
                j.addr = Some(Hex(*addr));
                j.len = Some(*len);
                j.ret = Some(JsonRet::Number(*ret));
            }
            EventBody::Brk { addr, ret } => {
                j.addr = Some(Hex(*addr));
                j.ret = Some(address_result(*ret));
            }
            EventBody::Mprotect {
                addr,
                len,
                prot,
                pkey,
                ret,
            } => {
                j.addr = Some(Hex(*addr));
                j.len = Some(*len);
                j.prot = Some(*prot);
                j.prot_str = Some(Shown::Prot(*prot));
                j.pkey = *pkey;
                j.ret = Some(JsonRet::Number(*ret));
            }
            EventBody::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
                ret,
            } => {
                j.old_addr = Some(Hex(*old_addr));
                j.old_len = Some(*old_len);
                j.new_len = Some(*new_len);
                j.flags = Some(*flags);
                j.flags_str = Some(Shown::MremapFlags(*flags));
                j.new_addr = Some(Hex(*new_addr));
                j.ret = Some(address_result(*ret));
            }
            EventBody::Shmat {
                shmid,
                addr,
                flags,
                ret,
            } => {
                j.shmid = Some(*shmid);
                j.addr = Some(Hex(*addr));
                j.flags = Some(*flags);
                j.ret = Some(address_result(*ret));
            }
            EventBody::Shmdt { addr, ret } => {
                j.addr = Some(Hex(*addr));
                j.ret = Some(JsonRet::Number(*ret));
            }
            EventBody::VmaName {
                addr,
                len,
                name,
                ret,
            } => {
                j.addr = Some(Hex(*addr));
                j.len = Some(*len);
                j.name = Some(name.as_deref());
                j.ret = Some(JsonRet::Number(*ret));
            }
            EventBody::Exec { filename, old_tid } => {
                j.filename = Some(filename);
                j.old_tid = Some(*old_tid);
            }
            EventBody::Fork {
                child_pid,
                child_tid,
                clone_flags,
            } => {
                j.child_pid = Some(*child_pid);
                j.child_tid = Some(*child_tid);
                j.clone_flags = Some(*clone_flags);
                j.thread = Some(*child_pid == m.pid && child_tid != child_pid);
            }
            EventBody::Exit { group_dead } => j.group_dead = Some(*group_dead),
        }
        j.errno = self
            .result()
            .filter(|r| *r < 0)
            .and_then(|r| errno_name(r.saturating_neg()));
        j.duration_ns = self.syscall().map(|_| self.duration_ns);
        j
    }
}

/// An address, serialized as `"0x…"` without a heap allocation.
#[derive(Clone, Copy, Debug, Default)]
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// A syscall result: an address in hex, or a plain number (0, -errno).
#[derive(Clone, Copy, Debug)]
enum JsonRet {
    Address(Hex),
    Number(i64),
}

impl Serialize for JsonRet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonRet::Address(a) => a.serialize(s),
            JsonRet::Number(n) => s.serialize_i64(*n),
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

impl Serialize for Shown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&match *self {
            Shown::Prot(p) => prot_string(p),
            Shown::MmapFlags(f) => mmap_flags_string(f),
            Shown::MremapFlags(f) => mremap_flags_string(f),
        })
    }
}

/// The JSON shape of an event; absent fields are left out.
#[derive(Default, Serialize)]
struct JsonEvent<'a> {
    kind: &'static str,
    pid: u32,
    tid: u32,
    comm: &'a str,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    flags_str: Option<Shown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
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
    ret: Option<JsonRet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ns: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::super::Meta;
    use super::*;

    fn event(body: EventBody) -> Event {
        Event {
            meta: Meta {
                pid: 1234,
                tid: 1234,
                ts_ns: 7,
                comm: "foo".into(),
            },
            body,
            duration_ns: 5,
        }
    }

    #[test]
    fn mmap_line_matches_the_documented_form() {
        let e = event(EventBody::Mmap {
            addr: 0,
            len: 8192,
            prot: 3,
            flags: 0x22,
            fd: -1,
            offset: 0,
            ret: 0x7f15_a082_3000,
        });
        assert_eq!(
            e.to_line(),
            "mmap  pid=1234 tid=1234 comm=foo addr=0x0 len=8192 prot=RW- flags=PRIVATE|ANONYMOUS fd=-1 off=0 -> 0x7f15a0823000"
        );
        let j = e.to_json();
        assert_eq!(j["kind"], "mmap");
        assert_eq!(j["addr"], "0x0");
        assert_eq!(j["len"], 8192);
        assert_eq!(j["fd"], -1);
        assert_eq!(j["ret"], "0x7f15a0823000");
    }

    #[test]
    fn errors_print_errno_names() {
        let e = event(EventBody::Munmap {
            addr: 0x1000,
            len: 1,
            ret: -22,
        });
        assert!(e.to_line().ends_with("-> -22 (EINVAL)"), "{}", e.to_line());
        assert_eq!(e.to_json()["ret"], -22);
        assert_eq!(e.to_json()["errno"], "EINVAL");
        let failed_mmap = event(EventBody::Mmap {
            addr: 0,
            len: 1 << 50,
            prot: 3,
            flags: 0x22,
            fd: -1,
            offset: 0,
            ret: -12,
        });
        assert_eq!(failed_mmap.to_json()["ret"], -12);
    }

    #[test]
    fn fork_says_thread_or_process() {
        let thread = event(EventBody::Fork {
            child_pid: 1234,
            child_tid: 1240,
            clone_flags: 0x10000,
        });
        assert!(thread.to_line().contains("thread"));
        assert_eq!(thread.to_json()["thread"], true);
        let process = event(EventBody::Fork {
            child_pid: 1300,
            child_tid: 1300,
            clone_flags: 0,
        });
        assert_eq!(process.to_json()["child_pid"], 1300);
        assert_eq!(process.to_json()["thread"], false);
    }
}
