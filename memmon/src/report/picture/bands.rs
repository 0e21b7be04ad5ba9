//! From a layout's regions and gaps to the picture's bands: one per region
//! or gap, high addresses first, then runs of small regions collapsed.

use super::{Band, Layout, parse_hex};

/// Regions at most this big count as small for the first, same-kind pass.
const SMALL: u64 = 1 << 20;
/// A run of similar small regions collapses from this many regions on.
const MIN_RUN: usize = 8;

pub(super) fn build(layout: &Layout, max_bands: usize) -> Vec<Band> {
    let mut bands = singles(layout);
    let similar = |a: usize, b: usize| {
        let (a, b) = (&layout.regions[a], &layout.regions[b]);
        a.kind == b.kind && a.perms == b.perms && a.object == b.object
    };
    bands = collapse(bands, SMALL, MIN_RUN, &similar);
    // Still too many: small regions of any kind collapse, the bar for
    // "small" rising until the picture fits or nothing merges any more.
    let mut threshold = SMALL;
    while bands.len() > max_bands && threshold < (1 << 50) {
        bands = collapse(bands, threshold, 2, &|_, _| true);
        threshold *= 4;
    }
    bands
}

/// One band per region and per gap, high addresses first.
fn singles(layout: &Layout) -> Vec<Band> {
    let addr = |s: &str| parse_hex(s).unwrap_or_default();
    let mut out = Vec::with_capacity(layout.regions.len() + layout.gaps.len());
    for (i, r) in layout.regions.iter().enumerate() {
        out.push(Band {
            start: addr(&r.start),
            end: addr(&r.end),
            regions: i..i + 1,
            gaps: 0..0,
            collapsed: false,
        });
    }
    for (j, g) in layout.gaps.iter().enumerate() {
        out.push(Band {
            start: addr(&g.start),
            end: addr(&g.end),
            regions: 0..0,
            gaps: j..j + 1,
            collapsed: false,
        });
    }
    out.sort_by(|a, b| b.start.cmp(&a.start).then(b.end.cmp(&a.end)));
    // What no region or gap covers (the kernel's half between user space
    // and [vsyscall]) still gets a band, so the picture is to scale.
    let mut tiled = Vec::with_capacity(out.len() + 1);
    for band in out {
        if let Some(above) = tiled.last().map(|b: &Band| b.start)
            && above > band.end
        {
            tiled.push(Band {
                start: band.end,
                end: above,
                regions: 0..0,
                gaps: 0..0,
                collapsed: false,
            });
        }
        tiled.push(band);
    }
    tiled
}

/// Collapses each maximal run of adjacent bands that are all at most
/// `threshold` bytes, whose regions are all `similar` to the run's first,
/// starts and ends with a region and holds at least `min_run` regions.
fn collapse(
    bands: Vec<Band>,
    threshold: u64,
    min_run: usize,
    similar: &dyn Fn(usize, usize) -> bool,
) -> Vec<Band> {
    let mut out: Vec<Band> = Vec::with_capacity(bands.len());
    let mut i = 0;
    while i < bands.len() {
        let Some(first) = first_region(&bands[i]).filter(|_| bands[i].size() <= threshold) else {
            out.push(bands[i].clone());
            i += 1;
            continue;
        };
        // Extend over small bands of similar regions (gaps included) and
        // keep the run up to its last region.
        let (mut j, mut last_region_end) = (i, i);
        while j < bands.len()
            && bands[j].size() <= threshold
            && bands[j].regions.clone().all(|r| similar(first, r))
        {
            if !bands[j].regions.is_empty() {
                last_region_end = j;
            }
            j += 1;
        }
        let run = &bands[i..=last_region_end];
        let regions: usize = run.iter().map(|b| b.regions.len()).sum();
        if regions >= min_run.max(2) {
            out.push(merge(run));
            i = last_region_end + 1;
        } else {
            out.push(bands[i].clone());
            i += 1;
        }
    }
    out
}

fn first_region(band: &Band) -> Option<usize> {
    (!band.regions.is_empty()).then_some(band.regions.start)
}

/// One band for a run of adjacent bands (high addresses first).
fn merge(run: &[Band]) -> Band {
    let span = |ranges: &mut dyn Iterator<Item = std::ops::Range<usize>>| {
        let ranges: Vec<_> = ranges.filter(|r| !r.is_empty()).collect();
        match (
            ranges.iter().map(|r| r.start).min(),
            ranges.iter().map(|r| r.end).max(),
        ) {
            (Some(lo), Some(hi)) => lo..hi,
            _ => 0..0,
        }
    };
    Band {
        start: run.last().map_or(0, |b| b.start),
        end: run.first().map_or(0, |b| b.end),
        regions: span(&mut run.iter().map(|b| b.regions.clone())),
        gaps: span(&mut run.iter().map(|b| b.gaps.clone())),
        collapsed: true,
    }
}
