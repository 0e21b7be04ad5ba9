//! The address-space model: a pure, I/O-free mirror of one process's VMAs.
//!
//! Every operation corresponds to a successful syscall and is idempotent:
//! replaying an event already reflected in a /proc snapshot leaves the model
//! as it was, so a snapshot taken while events are in flight still converges.

mod build;
pub mod compare;
mod edit;
mod naming;
pub mod ops;
pub mod region;
mod remap;
#[cfg(test)]
pub(crate) mod tests;

use std::{
    collections::BTreeMap,
    ops::Bound::{Excluded, Unbounded},
};

use serde::{Deserialize, Serialize};

pub use compare::{Difference, View, compare};
pub use ops::MemOp;
pub use region::{Backing, PAGE_SIZE, Perms, Region, page_align_up};

/// The program break, as `mm->start_brk` and `mm->brk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrkState {
    pub start_brk: u64,
    /// The current break (not page aligned); the heap VMA ends at its page.
    pub brk: u64,
    /// False while `brk` is only inferred from a /proc snapshot (the end of
    /// `[heap]`), true once a brk syscall reported it.
    pub exact: bool,
}

/// One process's address space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressSpace {
    /// Non-overlapping regions keyed by their end address: mmap places
    /// new memory right below the lowest mapping, so the commonest edits
    /// (an mmap merging into the region above it, a munmap taking the
    /// bottom of one) move a region's start, and change no key.
    regions: BTreeMap<u64, Region>,
    pub brk: Option<BrkState>,
    /// `mm->start_stack`: the anonymous region holding it is `[stack]`.
    pub start_stack: Option<u64>,
}

impl AddressSpace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Regions in address order.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    /// Regions as the kernel's VMAs bound them, for naming and display:
    /// the model merges equal neighbours, but the kernel never merges the
    /// brk heap with the anonymous bss below it (adjacent when the heap is
    /// not randomized, e.g. under `setarch -R`), and /proc names only the
    /// upper one `[heap]`.
    pub fn vmas(&self) -> impl Iterator<Item = std::borrow::Cow<'_, Region>> {
        let split = self.brk.map(|b| b.start_brk);
        self.regions.values().flat_map(move |r| {
            let mut parts = vec![std::borrow::Cow::Borrowed(r)];
            if let Some(at) = split
                && r.start < at
                && at < r.end
                && matches!(r.backing, Backing::Anonymous { .. })
            {
                parts = vec![
                    std::borrow::Cow::Owned(r.slice(r.start, at)),
                    std::borrow::Cow::Owned(r.slice(at, r.end)),
                ];
            }
            parts
        })
    }

    /// Regions overlapping `[start, end)`, in address order.
    pub fn regions_in(&self, start: u64, end: u64) -> impl Iterator<Item = &Region> {
        self.regions
            .range((Excluded(start), Unbounded))
            .map(|(_, r)| r)
            .take_while(move |r| r.start < end)
    }

    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// The region containing `addr`, if any.
    pub fn region_at(&self, addr: u64) -> Option<&Region> {
        self.regions
            .range((Excluded(addr), Unbounded))
            .next()
            .map(|(_, r)| r)
            .filter(|r| r.start <= addr)
    }

    /// Sum of region sizes.
    pub fn mapped_bytes(&self) -> u64 {
        self.regions.values().map(Region::len).sum()
    }

    /// The pathname field exactly as the kernel would print it
    /// (`get_vma_name()`): `[heap]` and `[stack]` are derived from the
    /// region's position relative to brk and start_stack.
    pub fn display_path(&self, region: &Region) -> String {
        match &region.backing {
            Backing::File { path, .. } => path.clone(),
            Backing::Special { name } => name.clone(),
            Backing::Anonymous { name } => {
                // vma_is_initial_heap(): strict, so that the bss right
                // below an unrandomized heap (setarch -R) is not [heap].
                if let Some(brk) = self.brk
                    && region.start < brk.brk
                    && region.end > brk.start_brk
                {
                    return "[heap]".into();
                }
                if let Some(sp) = self.start_stack
                    && region.start <= sp
                    && region.end >= sp
                {
                    return "[stack]".into();
                }
                match name {
                    Some(name) => format!("[anon:{name}]"),
                    None => String::new(),
                }
            }
        }
    }
}
