//! `memmon diff PID --since D`: what changed in a layout, from the
//! process's recent events, each with the call that did it.

use serde::{Deserialize, Serialize};

use super::origins::{CallSiteView, Namer, OriginView};
use crate::{
    events::{Event, EventBody},
    model::{Perms, page_align_up},
    origin::{CallSite, Interner},
    report::hex,
    tracker::ProcessView,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Moved,
    Grown,
    Shrunk,
    Protection,
    Named,
    /// The layout changed in a way the event does not describe (aio ring,
    /// remap_file_pages, exec): the model was resynced from /proc.
    Resynced,
}

/// One change, with the event that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub start: String,
    pub end: String,
    /// Where a moved range was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Size before a grow, shrink or move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perms: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The event that made the change.
    #[serde(flatten)]
    pub by: OriginView,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiffReport {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_ticks: Option<u64>,
    pub comm: String,
    pub since_s: f64,
    /// Oldest first.
    pub changes: Vec<Change>,
    /// Set when the history kept does not reach back to `since`: older
    /// changes are not listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_at_s: Option<f64>,
}

/// What `event` changed: kind, range, and details; None for events that
/// change no layout (failures, brk queries, thread events).
fn describe(event: &Event, last_brk: &mut Option<u64>) -> Option<Change> {
    if event.failed() {
        return None;
    }
    let change = |kind, start: u64, end: u64| Change {
        kind,
        start: hex(start),
        end: hex(end),
        from: None,
        old_size: None,
        perms: None,
        path: None,
        by: OriginView {
            syscall: event.kind().into(),
            ts_ns: event.meta.ts_ns,
            age_ms: 0,
            tid: event.meta.tid,
            call_site: None,
            stack: Vec::new(),
        },
    };
    let span = |addr: u64, len: u64| (addr, addr.saturating_add(page_align_up(len)));
    Some(match &event.body {
        EventBody::Mmap {
            len,
            prot,
            flags,
            ret,
            file,
            ..
        } => {
            let (s, e) = span(*ret as u64, *len);
            let shared = flags & crate::model::ops::MAP_TYPE != crate::model::ops::MAP_PRIVATE;
            Change {
                perms: Some(Perms::from_prot(*prot, shared).to_string()),
                path: file.as_ref().and_then(|f| f.path.clone()),
                ..change(ChangeKind::Added, s, e)
            }
        }
        EventBody::Munmap { addr, len, .. } => {
            let (s, e) = span(*addr, *len);
            change(ChangeKind::Removed, s, e)
        }
        EventBody::Mprotect {
            addr, len, prot, ..
        } => {
            let (s, e) = span(*addr, *len);
            Change {
                perms: Some(Perms::from_prot(*prot, false).to_string()[..3].to_string()),
                ..change(ChangeKind::Protection, s, e)
            }
        }
        EventBody::Mremap {
            old_addr,
            old_len,
            new_len,
            ret,
            ..
        } => {
            let new = *ret as u64;
            let (s, e) = span(new, *new_len);
            let (old, old_size) = (*old_addr, page_align_up(*old_len));
            let kind = if new != old {
                ChangeKind::Moved
            } else if e - s > old_size {
                ChangeKind::Grown
            } else {
                ChangeKind::Shrunk
            };
            Change {
                from: (new != old).then(|| hex(old)),
                old_size: Some(old_size),
                ..change(kind, s, e)
            }
        }
        EventBody::Brk { addr, ret } => {
            let new = *ret as u64;
            let before = last_brk.replace(new);
            if *addr == 0 {
                return None; // a query
            }
            match before {
                Some(old) if page_align_up(new) > page_align_up(old) => {
                    change(ChangeKind::Grown, page_align_up(old), page_align_up(new))
                }
                Some(old) if page_align_up(new) < page_align_up(old) => {
                    change(ChangeKind::Shrunk, page_align_up(new), page_align_up(old))
                }
                Some(_) => return None,
                // The heap's top moved; from where, history does not say.
                None => change(ChangeKind::Grown, new, page_align_up(new)),
            }
        }
        EventBody::Shmat { ret, .. } => change(ChangeKind::Added, *ret as u64, *ret as u64),
        EventBody::Shmdt { addr, .. } => change(ChangeKind::Removed, *addr, *addr),
        EventBody::VmaName { addr, len, .. } => {
            let (s, e) = span(*addr, *len);
            change(ChangeKind::Named, s, e)
        }
        EventBody::IoSetup { ring, .. } | EventBody::IoDestroy { ring, .. } => {
            change(ChangeKind::Resynced, *ring, *ring)
        }
        EventBody::RemapFilePages { start, size, .. } => {
            let (s, e) = span(*start, *size);
            change(ChangeKind::Resynced, s, e)
        }
        EventBody::Exec { .. } => change(ChangeKind::Resynced, 0, 0),
        EventBody::Fork { .. } | EventBody::Exit { .. } => return None,
    })
}

/// The changes `view`'s history records since `since_ns`.
pub fn diff(view: &ProcessView, namer: &Namer, since_ns: u64, history_full: bool) -> DiffReport {
    let mut last_brk = None;
    let mut changes = Vec::new();
    let mut sites = Vec::new();
    let mut interner = Interner::default();
    for event in &view.history {
        let change = describe(event, &mut last_brk);
        if event.meta.ts_ns < since_ns {
            continue;
        }
        if let Some(mut change) = change {
            change.by.age_ms = namer.now_ns.saturating_sub(event.meta.ts_ns) / 1_000_000;
            // Normalized against today's layout: the code that called is
            // normally still mapped.
            let site = CallSite::normalize(&view.space, event.meta.call_site, &mut interner);
            sites.push(site);
            changes.push(change);
        }
    }
    let wanted: Vec<&CallSite> = sites.iter().flatten().collect();
    let names = namer.symbols.names(view.pid, &wanted);
    let mut named = wanted.iter().zip(names);
    for (change, site) in changes.iter_mut().zip(&sites) {
        if site.is_some()
            && let Some((site, name)) = named.next()
        {
            change.by.call_site = Some(CallSiteView::of(site, name));
        }
    }
    let oldest = view.history.first().map(|e| e.meta.ts_ns);
    DiffReport {
        pid: view.pid,
        start_time_ticks: view.start_time_ticks,
        comm: view.comm.clone(),
        since_s: namer.now_ns.saturating_sub(since_ns) as f64 / 1e9,
        changes,
        truncated_at_s: oldest
            .filter(|&t| history_full && t > since_ns)
            .map(|t| namer.now_ns.saturating_sub(t) as f64 / 1e9),
    }
}
