//! `origins`, `leaks` and `diff`: answered by workers from views, with
//! call sites named on the I/O pool.

use std::sync::Arc;

use tokio::time::Instant;

use super::{
    Want,
    workers::{Failure, WAIT_FOR_MODEL, Workers, blocking},
};
use crate::{
    protocol::{Reply, ReplyEnvelope},
    report::{diff, origins},
    server::{Peer, frame},
};

const MS: u64 = 1_000_000;

impl Workers {
    pub(super) async fn origins(
        self: Arc<Self>,
        pid: u32,
        window_ms: u64,
        peer: Peer,
    ) -> Result<Arc<Vec<u8>>, Failure> {
        let peer = blocking(move || peer.admit(pid).map(|()| peer)).await??;
        let view = self
            .ready_view(pid, (0, true), Instant::now() + WAIT_FOR_MODEL)
            .await?;
        blocking(move || {
            let namer = self.namer(pid);
            let report = origins::origins_report(&view, &namer, window_ms.saturating_mul(MS));
            peer.still_allowed(pid)?;
            Ok(Arc::new(frame(&ReplyEnvelope::ok(Reply::Origins(report)))))
        })
        .await?
    }

    pub(super) async fn leaks(
        self: Arc<Self>,
        window_ms: u64,
        min_growth: u64,
        peer: Peer,
    ) -> Result<Arc<Vec<u8>>, Failure> {
        let published = self.view(Want::All { origins: true }).await?;
        blocking(move || {
            let window_ns = window_ms.saturating_mul(MS);
            let mut leaks: Vec<origins::LeakView> = published
                .processes
                .iter()
                .filter(|p| !p.awaiting_snapshot && p.uid.is_some())
                // As `ps`: only what the kernel would show the asker.
                .filter(|p| peer.sees_in_list(p.pid))
                .flat_map(|p| origins::leaks_of(p, &self.namer(p.pid), window_ns, min_growth))
                .collect();
            leaks.sort_by(|a, b| b.site.growth.cmp(&a.site.growth).then(a.pid.cmp(&b.pid)));
            Arc::new(frame(&ReplyEnvelope::ok(Reply::Leaks(
                origins::LeaksReport {
                    window_s: window_ns as f64 / 1e9,
                    min_growth,
                    leaks,
                },
            ))))
        })
        .await
    }

    pub(super) async fn diff(
        self: Arc<Self>,
        pid: u32,
        since_ms: u64,
        peer: Peer,
    ) -> Result<Arc<Vec<u8>>, Failure> {
        let peer = blocking(move || peer.admit(pid).map(|()| peer)).await??;
        let view = self
            .ready_view(
                pid,
                (self.history_len, false),
                Instant::now() + WAIT_FOR_MODEL,
            )
            .await?;
        blocking(move || {
            let namer = self.namer(pid);
            let since = namer.now_ns.saturating_sub(since_ms.saturating_mul(MS));
            let full = view.history.len() >= self.history_len;
            let report = diff::diff(&view, &namer, since, full);
            peer.still_allowed(pid)?;
            Ok(Arc::new(frame(&ReplyEnvelope::ok(Reply::Diff(report)))))
        })
        .await?
    }
}
