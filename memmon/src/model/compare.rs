//! The fidelity check: does the model agree with /proc/PID/maps?
//!
//! For every address both sides must agree on mapped or not, the four
//! permission characters, the pathname field as printed, and, for file
//! mappings, the file offset. Splits and merges don't count, and the lower
//! end of `[stack]` may differ (it grows on faults, without a syscall).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{AddressSpace, Backing, Perms};
use crate::procmaps::MapsEntry;

#[cfg(test)]
mod tests;

/// What one side shows at the start of a differing range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub perms: Perms,
    pub path: String,
    /// File offset at the range start; None when not a file mapping.
    pub offset: Option<u64>,
}

/// A range where model and kernel disagree; None means unmapped there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub start: u64,
    pub end: u64,
    pub model: Option<View>,
    pub kernel: Option<View>,
}

/// A normalised run of addresses with one appearance.
#[derive(Clone, Debug)]
struct Segment {
    start: u64,
    end: u64,
    perms: Perms,
    path: String,
    offset: Option<u64>,
}

impl Segment {
    fn view_at(&self, addr: u64) -> View {
        View {
            perms: self.perms,
            path: self.path.clone(),
            offset: self.offset.map(|o| o.wrapping_add(addr - self.start)),
        }
    }
}

/// Differences between the model and the kernel's maps, in address order.
pub fn compare(model: &AddressSpace, kernel: &[MapsEntry]) -> Vec<Difference> {
    let model_segs = normalise(model.vmas().map(|r| Segment {
        start: r.start,
        end: r.end,
        perms: r.perms,
        path: model.display_path(&r),
        offset: matches!(r.backing, Backing::File { .. }).then_some(r.offset),
    }));
    let mut kernel_sorted: Vec<&MapsEntry> = kernel.iter().filter(|e| e.start < e.end).collect();
    kernel_sorted.sort_by_key(|e| e.start);
    let kernel_segs = normalise(kernel_sorted.into_iter().map(|e| Segment {
        start: e.start,
        end: e.end,
        perms: e.perms,
        path: e.path.clone(),
        offset: is_file_path(&e.path).then_some(e.offset),
    }));
    let diffs = sweep(&model_segs, &kernel_segs);
    diffs
        .into_iter()
        .filter(|d| !stack_growth(d, &model_segs, &kernel_segs))
        .collect()
}

/// Kernel paths that name a file (and so carry a meaningful offset).
fn is_file_path(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('[')
}

/// Merges adjacent segments that look identical (offsets continuing).
fn normalise(segments: impl Iterator<Item = Segment>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for seg in segments {
        if let Some(last) = out.last_mut()
            && last.end == seg.start
            && last.perms == seg.perms
            && last.path == seg.path
            && last.offset.map(|o| o.wrapping_add(last.end - last.start)) == seg.offset
        {
            last.end = seg.end;
            continue;
        }
        out.push(seg);
    }
    out
}

/// The segment containing `addr`, by binary search.
fn find(segs: &[Segment], addr: u64) -> Option<&Segment> {
    let i = segs.partition_point(|s| s.end <= addr);
    segs.get(i).filter(|s| s.start <= addr)
}

/// Walks every elementary interval between the boundaries of both sides
/// and reports the disagreeing ones, coalesced.
fn sweep(model: &[Segment], kernel: &[Segment]) -> Vec<Difference> {
    let mut bounds: Vec<u64> = model
        .iter()
        .chain(kernel)
        .flat_map(|s| [s.start, s.end])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut out: Vec<Difference> = Vec::new();
    for pair in bounds.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let m = find(model, start).map(|s| s.view_at(start));
        let k = find(kernel, start).map(|s| s.view_at(start));
        if m == k {
            continue;
        }
        if let Some(last) = out.last_mut()
            && last.end == start
            && continues(&last.model, last.start, &m, start)
            && continues(&last.kernel, last.start, &k, start)
        {
            last.end = end;
            continue;
        }
        out.push(Difference {
            start,
            end,
            model: m,
            kernel: k,
        });
    }
    out
}

/// Whether `next` (seen at `at`) is the same appearance as `prev` (seen at
/// `prev_start`), so two differing intervals read as one.
fn continues(prev: &Option<View>, prev_start: u64, next: &Option<View>, at: u64) -> bool {
    match (prev, next) {
        (None, None) => true,
        (Some(p), Some(n)) => {
            p.perms == n.perms
                && p.path == n.path
                && p.offset.map(|o| o.wrapping_add(at - prev_start)) == n.offset
        }
        _ => false,
    }
}

/// The one allowed exception: a range that is `[stack]` on one side and
/// unmapped on the other, directly below a `[stack]` with the same
/// permissions on both sides (the same VMA, grown or not yet grown).
fn stack_growth(diff: &Difference, model: &[Segment], kernel: &[Segment]) -> bool {
    let grown = match (&diff.model, &diff.kernel) {
        (None, Some(grown)) | (Some(grown), None) => grown,
        _ => return false,
    };
    let stack_above = |segs: &[Segment]| {
        find(segs, diff.end).is_some_and(|s| s.path == "[stack]" && s.perms == grown.perms)
    };
    grown.path == "[stack]" && stack_above(model) && stack_above(kernel)
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.perms, self.path)?;
        if let Some(offset) = self.offset {
            write!(f, " @{offset:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}-{:#x} ({}): ",
            self.start,
            self.end,
            human_size(self.end - self.start)
        )?;
        match (&self.model, &self.kernel) {
            (Some(m), Some(k)) => write!(f, "model {m} vs kernel {k}"),
            (Some(m), None) => write!(f, "only in model: {m}"),
            (None, Some(k)) => write!(f, "only in kernel: {k}"),
            (None, None) => f.write_str("no difference"),
        }
    }
}

/// `8 KiB`, `2 MiB`: the largest binary unit that divides the size exactly.
fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    UNITS
        .iter()
        .find(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        .map_or_else(
            || format!("{bytes} B"),
            |(unit, size)| format!("{} {unit}", bytes / size),
        )
}
