//! `memmon wx --events`: recent W^X transitions, from views on a worker.

use std::sync::Arc;

use tokio::time::Instant;

use super::{
    Want,
    workers::{Failure, WAIT_FOR_MODEL, Workers, blocking},
};
use crate::{
    protocol::{Reply, ReplyEnvelope},
    rules::wx_events::WxEventView,
    seed::monotonic_ns,
    server::{Peer, frame},
    tracker::ProcessView,
};

impl Workers {
    /// `view`'s transitions, their call sites named in one batch.
    fn events_of(&self, view: &ProcessView) -> Vec<WxEventView> {
        let events: Vec<_> = view.wx.events().collect();
        let sites: Vec<_> = events
            .iter()
            .filter_map(|e| e.origin.call_site.as_ref())
            .collect();
        let mut named = self.namer(view.pid).sites(&sites).into_iter();
        events
            .iter()
            .map(|e| {
                let mut out = WxEventView::new(view.pid, &view.comm, view.uid, e);
                if e.origin.call_site.is_some() {
                    out.call_site = named.next();
                }
                out
            })
            .collect()
    }
}

fn reply(mut events: Vec<WxEventView>) -> Arc<Vec<u8>> {
    events.sort_by_key(|e| (e.ts_ns, e.pid));
    Arc::new(frame(&ReplyEnvelope::ok(Reply::WxEvents {
        now_ns: monotonic_ns(),
        events,
    })))
}

impl Workers {
    /// One process's transitions under the rule of `query` (the peer's
    /// passed maps), or every process's the peer sees in a list.
    pub(super) async fn wx_events(
        self: Arc<Self>,
        pid: Option<u32>,
        peer: Peer,
    ) -> Result<Arc<Vec<u8>>, Failure> {
        match pid {
            Some(pid) => {
                let peer = blocking(move || peer.admit(pid).map(|()| peer)).await??;
                let deadline = Instant::now() + WAIT_FOR_MODEL;
                let view = self.ready_view(pid, (0, false), deadline).await?;
                blocking(move || {
                    let reply = reply(self.events_of(&view));
                    // An exec or exit since the peer opened its maps
                    // refuses the reply, as for `query`.
                    peer.still_allowed(pid)?;
                    Ok(reply)
                })
                .await?
            }
            None => {
                let published = self.view(Want::All { origins: false }).await?;
                blocking(move || {
                    let events = published
                        .processes
                        .iter()
                        .filter(|p| p.wx.events().len() > 0)
                        .filter(|p| peer.sees_in_list(p.pid))
                        .flat_map(|p| self.events_of(p))
                        .collect();
                    reply(events)
                })
                .await
            }
        }
    }
}
