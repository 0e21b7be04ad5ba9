//! Band heights: a log scale of size, so that a 4 KiB guard page, a
//! 132 KiB heap and a 42 TiB gap are all visible and ordered by size.

const PAGE: f64 = 4096.0;
/// Each doubling of size adds this many rows.
const ROWS_PER_DOUBLING: f64 = 1.0 / 3.0;

/// A band's height in text rows (fractional; the SVG uses it as is, the
/// terminal rounds down): 1 for a page or less, +1 per 8x in size.
pub fn rows(size: u64) -> f64 {
    let pages = (size as f64 / PAGE).max(1.0);
    1.0 + pages.log2() * ROWS_PER_DOUBLING
}
