//! Building an `AddressSpace` directly from regions (tests, fixtures).

use super::{AddressSpace, Region};

impl AddressSpace {
    /// A space holding `regions`, which must not overlap (later ones with
    /// the same end replace earlier ones); no brk or stack information.
    pub fn from_regions(regions: impl IntoIterator<Item = Region>) -> Self {
        let space = Self {
            regions: regions.into_iter().map(|r| (r.end, r)).collect(),
            ..Self::default()
        };
        debug_assert!(
            space.regions.values().all(|r| r.start < r.end)
                && space
                    .regions
                    .values()
                    .zip(space.regions.values().skip(1))
                    .all(|(a, b)| a.end <= b.start),
            "from_regions: regions must be non-empty and must not overlap: {:x?}",
            space
                .regions
                .values()
                .map(|r| (r.start, r.end))
                .collect::<Vec<_>>()
        );
        space
    }
}
