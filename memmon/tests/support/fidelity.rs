//! The README's fidelity rule: a layout from `memmon query --json` agrees
//! with /proc/PID/maps when, after merging the adjacent pieces either side
//! split, the same spans have the same permissions, paths and (for files)
//! offsets; the lower end of [stack] may differ.

use serde_json::Value;

use super::client::hex;

/// One mapping as the fidelity rule sees it: the offset only counts for
/// file mappings.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
    perms: String,
    offset: Option<u64>,
    path: String,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}-{:x} {}", self.start, self.end, self.perms)?;
        if let Some(off) = self.offset {
            write!(f, " off={off:#x}")?;
        }
        write!(f, " {:?}", self.path)
    }
}

/// File-backed: /proc prints an absolute path (memfd, SysV shm and
/// deleted files included); `[heap]`, `[anon:x]` and "" are not files.
fn is_file_path(path: &str) -> bool {
    path.starts_with('/')
}

fn span(start: u64, end: u64, perms: &str, offset: u64, path: &str) -> Span {
    Span {
        start,
        end,
        perms: perms.to_owned(),
        offset: is_file_path(path).then_some(offset),
        path: path.to_owned(),
    }
}

/// Parses /proc/PID/maps; the path is everything after the inode and its
/// padding, exactly as printed.
fn proc_spans(maps: &str) -> Vec<Span> {
    maps.lines()
        .map(|line| {
            let mut rest = line;
            let mut fields = Vec::new();
            for _ in 0..5 {
                rest = rest.trim_start_matches(' ');
                let end = rest.find(' ').unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            let (lo, hi) = fields[0].split_once('-').expect("start-end");
            span(
                u64::from_str_radix(lo, 16).unwrap(),
                u64::from_str_radix(hi, 16).unwrap(),
                fields[1],
                u64::from_str_radix(fields[2], 16).unwrap(),
                rest.trim_start_matches(' '),
            )
        })
        .collect()
}

fn layout_spans(layout: &Value) -> Vec<Span> {
    layout["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(|r| {
            span(
                hex(&r["start"]),
                hex(&r["end"]),
                r["perms"].as_str().expect("perms"),
                r["offset"].as_u64().expect("offset"),
                r["path"].as_str().expect("path"),
            )
        })
        .collect()
}

/// Merges adjacent spans that differ only in where one was split.
fn merged(spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in spans {
        if let Some(last) = out.last_mut() {
            let continues = last.end == s.start
                && last.perms == s.perms
                && last.path == s.path
                && match (last.offset, s.offset) {
                    (Some(a), Some(b)) => a + (last.end - last.start) == b,
                    (None, None) => true,
                    _ => false,
                };
            if continues {
                last.end = s.end;
                continue;
            }
        }
        out.push(s);
    }
    out
}

/// Asserts the layout agrees with /proc under the README's rule.
pub fn assert_agrees(layout: &Value, maps: &str) {
    let mut ours = merged(layout_spans(layout));
    let mut kernel = merged(proc_spans(maps));
    // The lower end of [stack] grows on faults, with no syscall to see.
    let floor = ours
        .iter()
        .chain(&kernel)
        .filter(|s| s.path == "[stack]")
        .map(|s| s.start)
        .max();
    for s in ours.iter_mut().chain(kernel.iter_mut()) {
        if s.path == "[stack]" {
            s.start = floor.unwrap();
        }
    }
    if ours != kernel {
        let show = |v: &[Span]| v.iter().map(|s| format!("  {s}\n")).collect::<String>();
        let first = ours
            .iter()
            .zip(&kernel)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(kernel.len()));
        panic!(
            "the layout disagrees with /proc at entry {first}:\n--- query ---\n{}--- /proc ---\n{}",
            show(&ours),
            show(&kernel)
        );
    }
}
