//! The two renderings of an event: the strace-like line of `memmon trace`
//! and one JSON object per event for `--json`.

use serde_json::{Map, Value, json};

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
        let m = &self.meta;
        let mut obj = Map::new();
        obj.insert("kind".into(), json!(self.kind()));
        obj.insert("pid".into(), json!(m.pid));
        obj.insert("tid".into(), json!(m.tid));
        obj.insert("comm".into(), json!(m.comm));
        obj.insert("ts_ns".into(), json!(m.ts_ns));
        let mut put = |key: &str, value: Value| {
            obj.insert(key.into(), value);
        };
        let ret_value = |ret: i64, address: bool| {
            if ret >= 0 && address {
                json!(hex(ret as u64))
            } else {
                json!(ret)
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
                put("addr", json!(hex(*addr)));
                put("len", json!(len));
                put("prot", json!(prot));
                put("prot_str", json!(prot_string(*prot)));
                put("flags", json!(flags));
                put("flags_str", json!(mmap_flags_string(*flags)));
                put("fd", json!(fd));
                put("offset", json!(offset));
                put("ret", ret_value(*ret, true));
            }
            EventBody::Munmap { addr, len, ret } => {
                put("addr", json!(hex(*addr)));
                put("len", json!(len));
                put("ret", ret_value(*ret, false));
            }
            EventBody::Brk { addr, ret } => {
                put("addr", json!(hex(*addr)));
                put("ret", ret_value(*ret, true));
            }
            EventBody::Mprotect {
                addr,
                len,
                prot,
                pkey,
                ret,
            } => {
                put("addr", json!(hex(*addr)));
                put("len", json!(len));
                put("prot", json!(prot));
                put("prot_str", json!(prot_string(*prot)));
                if let Some(pkey) = pkey {
                    put("pkey", json!(pkey));
                }
                put("ret", ret_value(*ret, false));
            }
            EventBody::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
                ret,
            } => {
                put("old_addr", json!(hex(*old_addr)));
                put("old_len", json!(old_len));
                put("new_len", json!(new_len));
                put("flags", json!(flags));
                put("flags_str", json!(mremap_flags_string(*flags)));
                put("new_addr", json!(hex(*new_addr)));
                put("ret", ret_value(*ret, true));
            }
            EventBody::Shmat {
                shmid,
                addr,
                flags,
                ret,
            } => {
                put("shmid", json!(shmid));
                put("addr", json!(hex(*addr)));
                put("flags", json!(flags));
                put("ret", ret_value(*ret, true));
            }
            EventBody::Shmdt { addr, ret } => {
                put("addr", json!(hex(*addr)));
                put("ret", ret_value(*ret, false));
            }
            EventBody::VmaName {
                addr,
                len,
                name,
                ret,
            } => {
                put("addr", json!(hex(*addr)));
                put("len", json!(len));
                put("name", json!(name));
                put("ret", ret_value(*ret, false));
            }
            EventBody::Exec { filename, old_tid } => {
                put("filename", json!(filename));
                put("old_tid", json!(old_tid));
            }
            EventBody::Fork {
                child_pid,
                child_tid,
                clone_flags,
            } => {
                put("child_pid", json!(child_pid));
                put("child_tid", json!(child_tid));
                put("clone_flags", json!(clone_flags));
                put(
                    "thread",
                    json!(*child_pid == m.pid && child_tid != child_pid),
                );
            }
            EventBody::Exit { group_dead } => put("group_dead", json!(group_dead)),
        }
        if let Some(ret) = self.result().filter(|r| *r < 0)
            && let Some(name) = errno_name(ret.saturating_neg())
        {
            put("errno", json!(name));
        }
        if self.syscall().is_some() {
            put("duration_ns", json!(self.duration_ns));
        }
        Value::Object(obj)
    }
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
