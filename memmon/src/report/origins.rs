//! Origins as users see them: per region (`query --origins`), per call
//! site (`memmon origins`), system-wide growth (`memmon leaks`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    bpf::StackTable,
    model::AddressSpace,
    origin::{CallSite, Interner, Origin, OriginMap, SiteKey, Tally},
    report::hex,
    symbols::Symbols,
    tracker::ProcessView,
};

/// A call site: the address in the process, and (when in a file) the
/// object and file offset it was normalized to, with its symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSiteView {
    pub addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub offset: String,
}

impl CallSiteView {
    pub fn of(site: &CallSite, symbol: Option<Arc<str>>) -> Self {
        CallSiteView {
            addr: hex(site.addr),
            symbol: symbol.map(|s| s.to_string()),
            object: site.object.as_ref().map(|o| o.to_string()),
            offset: hex(site.offset),
        }
    }

    /// `object+0xoffset` (the file name only) or the bare address, with
    /// the symbol in front when known: `emit (libx.so+0x234)`.
    pub fn short(&self) -> String {
        let place = match &self.object {
            Some(path) => {
                let name = path.rsplit('/').next().unwrap_or(path);
                format!("{name}+{}", self.offset)
            }
            None => self.addr.clone(),
        };
        match &self.symbol {
            Some(symbol) => format!("{symbol} ({place})"),
            None => place,
        }
    }
}

/// One event that made or changed memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginView {
    /// The syscall, or `seed` for memory that was there before memmon
    /// saw the process (or while it missed events).
    pub syscall: String,
    pub ts_ns: u64,
    pub age_ms: u64,
    pub tid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_site: Option<CallSiteView>,
    /// The user stack, innermost first, when stacks are captured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<CallSiteView>,
}

/// A sub-range of a region with its own origin (the kernel merged
/// neighbours made by different calls).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeOrigin {
    pub start: String,
    pub end: String,
    pub origin: OriginView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_changed: Option<OriginView>,
}

/// Names call sites for one process in one batch.
pub struct Namer<'a> {
    pub pid: u32,
    pub now_ns: u64,
    pub symbols: &'a Symbols,
    /// The kernel's captured stacks (`daemon --stacks`).
    pub stacks: Option<&'a StackTable>,
}

impl Namer<'_> {
    /// `sites` as views, named in one batch.
    pub fn sites(&self, sites: &[&CallSite]) -> Vec<CallSiteView> {
        let names = self.symbols.names(self.pid, sites);
        sites
            .iter()
            .zip(names)
            .map(|(site, name)| CallSiteView::of(site, name))
            .collect()
    }

    fn origin(
        &self,
        origin: &Origin,
        named: &mut impl Iterator<Item = CallSiteView>,
    ) -> OriginView {
        OriginView {
            syscall: origin.cause.name().into(),
            ts_ns: origin.ts_ns,
            age_ms: self.now_ns.saturating_sub(origin.ts_ns) / 1_000_000,
            tid: origin.tid,
            call_site: origin.call_site.as_ref().and_then(|_| named.next()),
            stack: Vec::new(),
        }
    }

    /// The origins of each `[start, end)` in `ranges`, in address order,
    /// with every call site named in one batch.
    pub fn ranges(
        &self,
        map: &OriginMap,
        space: &AddressSpace,
        ranges: &[(u64, u64)],
    ) -> Vec<Vec<RangeOrigin>> {
        let spans: Vec<Vec<_>> = ranges
            .iter()
            .map(|&(start, end)| map.spans_in(start, end).collect())
            .collect();
        let sites: Vec<&CallSite> = spans
            .iter()
            .flatten()
            .flat_map(|(_, s)| {
                [Some(&s.created), s.changed.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o.call_site.as_ref())
            })
            .collect();
        let mut named = self.sites(&sites).into_iter();
        let mut out: Vec<Vec<RangeOrigin>> = spans
            .iter()
            .zip(ranges)
            .map(|(spans, &(start, end))| {
                spans
                    .iter()
                    .map(|(s, span)| RangeOrigin {
                        start: hex((*s).max(start)),
                        end: hex(span.end.min(end)),
                        origin: self.origin(&span.created, &mut named),
                        last_changed: span.changed.as_ref().map(|c| self.origin(c, &mut named)),
                    })
                    .collect()
            })
            .collect();
        if let Some(stacks) = self.stacks {
            let created = spans.iter().flatten().map(|(_, s)| &s.created);
            let views = out.iter_mut().flatten().map(|r| &mut r.origin);
            self.fill_stacks(stacks, space, created.zip(views).collect());
        }
        out
    }

    /// Each origin's captured stack, normalized against `space` (today's
    /// layout) and named in one batch. The kernel's walk starts at the
    /// syscall instruction in the libc wrapper and, the wrapper having no
    /// frame of its own, skips its caller: the call site goes second.
    fn fill_stacks(
        &self,
        stacks: &StackTable,
        space: &AddressSpace,
        pairs: Vec<(&Arc<Origin>, &mut OriginView)>,
    ) {
        let mut interner = Interner::default();
        let mut wanted: Vec<(usize, Vec<CallSite>)> = Vec::new();
        for (i, (origin, _)) in pairs.iter().enumerate() {
            let Some(frames) = origin.stack_id.and_then(|id| stacks.frames(id)) else {
                continue;
            };
            let mut addrs: Vec<u64> = frames.iter().take(1).copied().collect();
            addrs.extend(origin.call_site.as_ref().map(|c| c.addr));
            addrs.extend(frames.iter().skip(1));
            let sites = addrs
                .into_iter()
                .filter_map(|a| CallSite::normalize(space, a, &mut interner))
                .collect();
            wanted.push((i, sites));
        }
        let flat: Vec<&CallSite> = wanted.iter().flat_map(|(_, s)| s).collect();
        let mut named = self.sites(&flat).into_iter();
        let mut pairs = pairs;
        for (i, sites) in &wanted {
            pairs[*i].1.stack = named.by_ref().take(sites.len()).collect();
        }
    }
}

/// Fills in each region's origin (`query --origins`): the layout's regions
/// are the model's VMAs, in order.
pub fn attach_origins(layout: &mut super::Layout, view: &ProcessView, namer: &Namer) {
    let ranges: Vec<(u64, u64)> = view.space.vmas().map(|r| (r.start, r.end)).collect();
    let all = namer.ranges(&view.origins, &view.space, &ranges);
    for (region, mut parts) in layout.regions.iter_mut().zip(all) {
        if let Some(first) = parts.first() {
            region.origin = Some(first.origin.clone());
            region.last_changed = first.last_changed.clone();
        }
        if parts.len() > 1 {
            region.origins = std::mem::take(&mut parts);
        }
    }
}

/// Outstanding memory made by one call site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteView {
    pub syscall: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_site: Option<CallSiteView>,
    pub bytes: u64,
    /// Ranges made by separate calls (or split since).
    pub regions: u64,
    /// Bytes now minus bytes at the window's start.
    pub growth: i64,
    /// False when the site's series does not reach back that far.
    pub window_complete: bool,
}

/// `memmon origins PID`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OriginsReport {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_ticks: Option<u64>,
    pub comm: String,
    pub window_s: f64,
    /// Largest first.
    pub sites: Vec<SiteView>,
}

/// Growth of `tally` over the window ending now.
fn growth(tally: &Tally, now_ns: u64, window_ns: u64) -> (i64, bool) {
    let (then, complete) = tally.bytes_at(now_ns.saturating_sub(window_ns));
    (tally.bytes as i64 - then as i64, complete)
}

fn site_call_site(key: &SiteKey) -> Option<CallSite> {
    (key.object.is_some() || key.offset != 0).then(|| CallSite {
        addr: 0,
        object: key.object.clone(),
        offset: key.offset,
        dev: (0, 0),
    })
}

/// Call sites holding memory, largest first.
fn sorted_sites(view: &ProcessView) -> Vec<(&SiteKey, &Tally)> {
    let mut entries: Vec<(&SiteKey, &Tally)> = view
        .origins
        .totals()
        .iter()
        .filter(|(_, t)| t.bytes > 0)
        .collect();
    entries.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.offset.cmp(&b.0.offset)));
    entries
}

/// Views of the sites `keep` accepts, largest first, named in one batch.
fn site_views(
    view: &ProcessView,
    namer: &Namer,
    window_ns: u64,
    keep: impl Fn(&SiteKey, &Tally) -> bool,
) -> Vec<SiteView> {
    let entries: Vec<(&SiteKey, &Tally)> = sorted_sites(view)
        .into_iter()
        .filter(|(k, t)| keep(k, t))
        .collect();
    let sites: Vec<Option<CallSite>> = entries.iter().map(|(k, _)| site_call_site(k)).collect();
    let wanted: Vec<&CallSite> = sites.iter().flatten().collect();
    let mut named = namer.sites(&wanted).into_iter();
    entries
        .iter()
        .zip(&sites)
        .map(|((key, tally), site)| {
            let (growth, window_complete) = growth(tally, namer.now_ns, window_ns);
            SiteView {
                syscall: key.cause.name().into(),
                call_site: site.as_ref().and_then(|_| named.next()).map(|mut v| {
                    v.addr = String::new(); // one site, many addresses over time
                    v
                }),
                bytes: tally.bytes,
                regions: tally.spans,
                growth,
                window_complete,
            }
        })
        .collect()
}

/// Call sites by outstanding bytes, for one process.
pub fn origins_report(view: &ProcessView, namer: &Namer, window_ns: u64) -> OriginsReport {
    OriginsReport {
        pid: view.pid,
        start_time_ticks: view.start_time_ticks,
        comm: view.comm.clone(),
        window_s: window_ns as f64 / 1e9,
        sites: site_views(view, namer, window_ns, |_, _| true),
    }
}

/// A call site whose memory grew steadily over the window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeakView {
    pub pid: u32,
    pub comm: String,
    /// The systemd unit or cgroup, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(flatten)]
    pub site: SiteView,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaksReport {
    pub window_s: f64,
    pub min_growth: u64,
    /// Fastest growing first.
    pub leaks: Vec<LeakView>,
}

/// Grew by at least `min_growth`, and in at least three of the window's
/// four quarters without shrinking in any: steady growth, not one burst
/// or a pool that breathes.
pub fn grew_steadily(tally: &Tally, now_ns: u64, window_ns: u64, min_growth: u64) -> bool {
    let start = now_ns.saturating_sub(window_ns);
    let at = |i: u64| tally.bytes_at(start + window_ns / 4 * i).0;
    let q: Vec<u64> = (0..4).map(at).chain([tally.bytes]).collect();
    let ups = q.windows(2).filter(|w| w[1] > w[0]).count();
    let downs = q.windows(2).filter(|w| w[1] < w[0]).count();
    tally.bytes >= q[0] + min_growth && ups >= 3 && downs == 0
}

/// The steady growers of one process (only they are symbolized).
pub fn leaks_of(
    view: &ProcessView,
    namer: &Namer,
    window_ns: u64,
    min_growth: u64,
) -> Vec<LeakView> {
    let steady = |key: &SiteKey, tally: &Tally| {
        key.cause != crate::origin::Cause::Seed
            && grew_steadily(tally, namer.now_ns, window_ns, min_growth)
    };
    site_views(view, namer, window_ns, steady)
        .into_iter()
        .map(|site| LeakView {
            pid: view.pid,
            comm: view.comm.clone(),
            unit: view.cgroup.clone(),
            site,
        })
        .collect()
}
