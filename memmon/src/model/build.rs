//! Building an `AddressSpace` directly from regions (tests, fixtures).

use super::{AddressSpace, Region};

impl AddressSpace {
    /// A space holding `regions`, which must not overlap (later ones with
    /// the same start replace earlier ones); no brk or stack information.
    pub fn from_regions(regions: impl IntoIterator<Item = Region>) -> Self {
        Self {
            regions: regions.into_iter().map(|r| (r.start, r)).collect(),
            ..Self::default()
        }
    }
}
