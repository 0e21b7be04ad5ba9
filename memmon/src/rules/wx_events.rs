//! W^X transitions as events: what one memory operation did to the
//! writable and executable bits of the memory it touched.
//!
//! Four kinds, each reported at most once per operation (over the extent
//! of the pages it applies to, never per page):
//! - `created_wx`: memory becomes writable and executable at once (an
//!   mmap, an mremap's new pages, or an mprotect of memory that
//!   was not already both);
//! - `w_to_x`: an mprotect makes writable, non-executable memory
//!   executable (RW→RX, RW→RWX: the JIT pattern);
//! - `x_to_w`: an mprotect makes executable, non-writable memory writable
//!   (RX→RW, RX→RWX: the reverse);
//! - `anon_exec`: executable memory appears with no file behind it: an
//!   anonymous mmap with PROT_EXEC (private or shared), an mremap's new
//!   pages of such memory, or an mprotect adding X to anonymous memory.
//!
//! One mprotect may yield several kinds (e.g. PROT_NONE→RWX on anonymous
//! memory is both `created_wx` and `anon_exec`). Detection reads the model
//! before the operation is applied, and only for the few operations that
//! can set W or X, so every other event costs one match.

mod log;
#[cfg(test)]
mod tests;
mod view;

use serde::{Deserialize, Serialize};

pub use log::{WX_LOG_CAPACITY, WxCounts, WxEvent, WxLog};
pub use view::WxEventView;

use crate::model::{
    AddressSpace, Backing, MemOp, Perms, Region,
    ops::{
        MAP_ANONYMOUS, MAP_SHARED, MAP_SHARED_VALIDATE, MAP_TYPE, MREMAP_DONTUNMAP, PROT_EXEC,
        PROT_WRITE, SHARED_ANON_PATH,
    },
    page_align_up,
};

/// A kind of W^X transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WxKind {
    CreatedWx,
    WToX,
    XToW,
    AnonExec,
}

impl WxKind {
    pub const ALL: [WxKind; 4] = [
        WxKind::CreatedWx,
        WxKind::WToX,
        WxKind::XToW,
        WxKind::AnonExec,
    ];

    /// As serialized, and as the `transition` metric label.
    pub const fn label(self) -> &'static str {
        match self {
            WxKind::CreatedWx => "created_wx",
            WxKind::WToX => "w_to_x",
            WxKind::XToW => "x_to_w",
            WxKind::AnonExec => "anon_exec",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// One transition made by one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WxTransition {
    pub kind: WxKind,
    /// From the first to the end of the last page of this kind (pages in
    /// between may not be of it: see `bytes`).
    pub start: u64,
    pub end: u64,
    /// The bytes of this kind within `[start, end)`.
    pub bytes: u64,
    /// The permissions before, of the lowest page of this kind; None when
    /// the operation made new memory (mmap, mremap's new pages).
    pub old: Option<Perms>,
    /// The permissions after, of the lowest page of this kind.
    pub new: Perms,
}

/// What one operation did: at most one transition of each kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transitions([Option<WxTransition>; 4]);

impl Transitions {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    pub fn iter(&self) -> impl Iterator<Item = &WxTransition> {
        self.0.iter().flatten()
    }

    /// Adds `[start, end)` (above everything added so far) to every kind
    /// the change from `old` to `new` is.
    fn add(&mut self, start: u64, end: u64, old: Option<Perms>, new: Perms, no_file: bool) {
        if start >= end {
            return;
        }
        for kind in kinds(old, new, no_file) {
            match &mut self.0[kind.index()] {
                Some(t) => {
                    t.end = end;
                    t.bytes += end - start;
                }
                slot @ None => {
                    *slot = Some(WxTransition {
                        kind,
                        start,
                        end,
                        bytes: end - start,
                        old,
                        new,
                    })
                }
            }
        }
    }
}

/// The kinds a change of one page's permissions is (`old` None: new memory).
pub fn kinds(old: Option<Perms>, new: Perms, no_file: bool) -> impl Iterator<Item = WxKind> {
    let was = |f: fn(Perms) -> bool| old.is_some_and(f);
    let created_wx = new.write && new.exec && !was(|o| o.write && o.exec);
    let w_to_x = new.exec && was(|o| o.write && !o.exec);
    let x_to_w = new.write && was(|o| o.exec && !o.write);
    let anon_exec = no_file && new.exec && !was(|o| o.exec);
    [created_wx, w_to_x, x_to_w, anon_exec]
        .into_iter()
        .zip(WxKind::ALL)
        .filter_map(|(yes, kind)| yes.then_some(kind))
}

/// Whether no file is behind `region`: anonymous memory, or shared
/// anonymous memory (a shmem file with no name).
pub fn no_file(region: &Region) -> bool {
    match &region.backing {
        Backing::Anonymous { .. } => true,
        Backing::File { path, .. } => path == SHARED_ANON_PATH,
        Backing::Special { .. } => false,
    }
}

/// `[addr, addr + len)` in whole pages, saturating at the top.
fn pages(addr: u64, len: u64) -> (u64, u64) {
    (addr, addr.saturating_add(page_align_up(len)))
}

/// Whether `op` can set W or X at all: the one test every event takes.
#[inline]
pub fn may_transition(op: &MemOp) -> bool {
    match op {
        MemOp::Mmap { prot, .. } => prot & PROT_EXEC != 0,
        MemOp::Mprotect { prot, .. } => prot & (PROT_WRITE | PROT_EXEC) != 0,
        MemOp::Mremap { .. } => true,
        _ => false,
    }
}

/// The transitions `op` makes, read from `before`, the model it is about
/// to be applied to; None, at the cost of one test, for an op that can
/// make none.
#[inline]
pub fn detect(op: &MemOp, before: &AddressSpace) -> Option<Transitions> {
    may_transition(op).then(|| scan(op, before))
}

fn scan(op: &MemOp, before: &AddressSpace) -> Transitions {
    let mut found = Transitions::default();
    match op {
        MemOp::Mmap {
            addr,
            len,
            prot,
            flags,
            ..
        } => {
            let shared = matches!(flags & MAP_TYPE, MAP_SHARED | MAP_SHARED_VALIDATE);
            let (start, end) = pages(*addr, *len);
            let new = Perms::from_prot(*prot, shared);
            found.add(start, end, None, new, flags & MAP_ANONYMOUS != 0);
        }
        MemOp::Mprotect { addr, len, prot } => {
            let (start, end) = pages(*addr, *len);
            for region in before.regions_in(start, end) {
                let old = region.perms;
                let new = Perms::from_prot(*prot, old.shared);
                found.add(
                    region.start.max(start),
                    region.end.min(end),
                    Some(old),
                    new,
                    no_file(region),
                );
            }
        }
        MemOp::Mremap {
            old_addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => {
            let (old_len, new_len) = (page_align_up(*old_len), page_align_up(*new_len));
            // Only the pages the call adds are new memory; moved pages
            // keep their permissions (no transition).
            let first_new = if old_len == 0 || flags & MREMAP_DONTUNMAP != 0 {
                0
            } else {
                old_len
            };
            if new_len <= first_new {
                return found;
            }
            let Some(source) = before.region_at(*old_addr) else {
                return found;
            };
            if !source.perms.exec {
                return found;
            }
            let start = new_addr.saturating_add(first_new);
            let end = new_addr.saturating_add(new_len);
            found.add(start, end, None, source.perms, no_file(source));
        }
        _ => {}
    }
    found
}
