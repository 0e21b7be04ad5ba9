//! pmap -X's numbers on a layout: Rss, Pss, Swap, dirty and locked bytes
//! per region from /proc/PID/smaps, and their totals by kind. Read only
//! when a client asks (`memmon query --rss`): the kernel walks every page
//! table of the process to produce smaps, which stalls very large ones.

use std::collections::BTreeMap;

use procfs::{FromBufRead as _, process::MemoryMaps};
use serde::{Deserialize, Serialize};

use super::Layout;
use crate::classify::RegionKind;

/// Bytes, as /proc/PID/smaps reports them (it prints kB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rss {
    pub rss: u64,
    pub pss: u64,
    pub swap: u64,
    pub private_dirty: u64,
    pub shared_dirty: u64,
    pub locked: u64,
}

impl Rss {
    pub fn add(&mut self, other: &Rss) {
        self.rss += other.rss;
        self.pss += other.pss;
        self.swap += other.swap;
        self.private_dirty += other.private_dirty;
        self.shared_dirty += other.shared_dirty;
        self.locked += other.locked;
    }
}

/// One smaps entry: its `[start, end)` and its numbers.
pub type SmapsEntry = ((u64, u64), Rss);

/// Parses /proc/PID/smaps (procfs's parser; sizes come out in bytes).
pub fn parse_smaps(text: &[u8]) -> Result<Vec<SmapsEntry>, String> {
    let maps = MemoryMaps::from_buf_read(text).map_err(|e| format!("unparsable smaps: {e}"))?;
    Ok(maps
        .into_iter()
        .map(|m| {
            let field = |key: &str| m.extension.map.get(key).copied().unwrap_or(0);
            let rss = Rss {
                rss: field("Rss"),
                pss: field("Pss"),
                swap: field("Swap"),
                private_dirty: field("Private_Dirty"),
                shared_dirty: field("Shared_Dirty"),
                locked: field("Locked"),
            };
            (m.address, rss)
        })
        .collect())
}

fn parse_hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

/// Gives each region of `layout` the numbers of the smaps entries that
/// cover exactly its range (one, or several when the kernel has not merged
/// what the model did), and sets the totals by kind. Regions and entries
/// that do not line up (the process changed between the model's copy and
/// the read) are left without numbers and counted in a note: the totals
/// then cover the matched regions only, and say so.
pub fn attach(layout: &mut Layout, smaps: &[SmapsEntry]) {
    let mut totals: BTreeMap<RegionKind, Rss> = BTreeMap::new();
    let (mut unmatched_regions, mut used) = (0usize, 0usize);
    let mut next = 0;
    for region in &mut layout.regions {
        region.rss = None;
        let (Some(start), Some(end)) = (parse_hex(&region.start), parse_hex(&region.end)) else {
            unmatched_regions += 1;
            continue;
        };
        while next < smaps.len() && smaps[next].0.1 <= start {
            next += 1;
        }
        let (mut sum, mut covered, mut i) = (Rss::default(), start, next);
        while i < smaps.len() && smaps[i].0.0 == covered && smaps[i].0.1 <= end {
            sum.add(&smaps[i].1);
            covered = smaps[i].0.1;
            i += 1;
        }
        if covered == end && i > next {
            region.rss = Some(sum);
            totals.entry(region.kind).or_default().add(&sum);
            used += i - next;
            next = i;
        } else {
            unmatched_regions += 1;
        }
    }
    let unmatched_entries = smaps.len() - used;
    if unmatched_regions + unmatched_entries > 0 {
        layout.notes.push(format!(
            "rss: {unmatched_regions} regions and {unmatched_entries} smaps entries did not line up \
             (the process changed while it was read): those regions show no Rss and the totals \
             leave them out; ask again"
        ));
    }
    layout.rss_totals = Some(totals);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RegionView;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234                       /usr/bin/cat
Size:                  4 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                   4 kB
Pss:                   2 kB
Pss_Dirty:             0 kB
Shared_Clean:          4 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:         0 kB
Referenced:            4 kB
Anonymous:             0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
THPeligible:           0
VmFlags: rd mr mw me sd
7f0000000000-7f0000003000 rw-p 00000000 00:00 0 
Size:                 12 kB
Rss:                   8 kB
Pss:                   8 kB
Shared_Dirty:          0 kB
Private_Dirty:         8 kB
Swap:                  4 kB
Locked:                8 kB
VmFlags: rd wr mr mw me ac sd
7f0000003000-7f0000004000 rw-p 00000000 00:00 0 
Size:                  4 kB
Rss:                   4 kB
Pss:                   4 kB
Shared_Dirty:          0 kB
Private_Dirty:         4 kB
Swap:                  0 kB
Locked:                0 kB
VmFlags: rd wr mr mw me ac sd
";

    fn region(start: u64, end: u64, kind: RegionKind) -> RegionView {
        RegionView {
            start: crate::report::hex(start),
            end: crate::report::hex(end),
            size: end - start,
            perms: "rw-p".into(),
            offset: 0,
            path: String::new(),
            kind,
            object: None,
            segment: None,
            sections: vec![],
            note: None,
            rss: None,
            origin: None,
            last_changed: None,
            origins: Vec::new(),
        }
    }

    #[test]
    fn parses_the_fields_pmap_shows_in_bytes() {
        let entries = parse_smaps(SMAPS.as_bytes()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0, (0x55d0c0a00000, 0x55d0c0a01000));
        assert_eq!(
            entries[1].1,
            Rss {
                rss: 8192,
                pss: 8192,
                swap: 4096,
                private_dirty: 8192,
                shared_dirty: 0,
                locked: 8192,
            }
        );
        assert_eq!(entries[0].1.pss, 2048);
        assert!(
            parse_smaps(b"Rss: 4 kB\n").is_err(),
            "a field before any range"
        );
    }

    #[test]
    fn regions_get_the_entries_that_cover_them_and_mismatches_are_noted() {
        let entries = parse_smaps(SMAPS.as_bytes()).unwrap();
        let mut layout: Layout = serde_json::from_value(serde_json::json!({
            "pid": 1, "comm": "t", "exe": null, "uid": 0, "elf": null,
            "aslr": {"status": "full", "reasons": [], "codes": []},
            "wx": [], "heap": null, "regions": [], "gaps": [],
            "totals": {}, "mapped_bytes": 0
        }))
        .unwrap();
        layout.regions = vec![
            region(0x55d0c0a00000, 0x55d0c0a01000, RegionKind::Text),
            // The model merged what the kernel shows as two entries.
            region(0x7f0000000000, 0x7f0000004000, RegionKind::Anon),
        ];
        attach(&mut layout, &entries);
        assert_eq!(layout.regions[0].rss.unwrap().rss, 4096);
        assert_eq!(layout.regions[1].rss.unwrap().rss, 12288);
        let totals = layout.rss_totals.clone().unwrap();
        assert_eq!(totals[&RegionKind::Anon].private_dirty, 12288);
        assert!(layout.notes.is_empty(), "{:?}", layout.notes);

        // A region the kernel no longer has, and an entry the model lacks.
        layout.regions[1] = region(0x7f0000000000, 0x7f0000002000, RegionKind::Anon);
        attach(&mut layout, &entries);
        assert_eq!(layout.regions[1].rss, None);
        assert_eq!(layout.notes.len(), 1);
        assert!(
            layout.notes[0].starts_with("rss: 1 regions and 2 smaps entries"),
            "{:?}",
            layout.notes
        );
    }
}
