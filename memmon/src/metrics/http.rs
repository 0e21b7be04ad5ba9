//! The /metrics endpoint: a small HTTP/1 server (hyper) on a loopback
//! address by default. A scrape asks the daemon loop for a fresh
//! exposition, so the numbers are consistent with one another, unless one
//! was rendered less than [`CACHE_FOR`] ago: a flood of scrapes costs one
//! render a second.
//!
//! Any local user can connect, so connections are bounded: at most
//! [`MAX_CONNECTIONS`] (the oldest idle one is closed for a new one, see
//! [`crate::connections`]), [`HEADER_TIMEOUT`] to send a request's headers
//! (also the keep-alive idle timeout: hyper runs the same timer while
//! waiting for the next request), and [`MAX_LIFETIME`] in all.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ACCEPT, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Mutex, mpsc, oneshot},
    time::timeout,
};

use super::to_prometheus_text;
use crate::{
    connections::{Limits, METRICS_ENDPOINT, Slots},
    throttle::accept_loop,
};

/// Open connections at most (scrapers need one or two).
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers, or stay idle
/// between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open at all, so that one that stops
/// reading its response does not hold a slot forever.
pub const MAX_LIFETIME: Duration = Duration::from_secs(120);
/// How long a rendered exposition is served again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

const LIMITS: Limits = Limits {
    total: MAX_CONNECTIONS,
    // Peers are not told apart: only the total counts.
    per_key: |_| MAX_CONNECTIONS,
};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A scrape waiting for the daemon's OpenMetrics text.
pub type ScrapeRequest = oneshot::Sender<String>;

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// One exposition in both formats, rendered together.
struct Exposition {
    openmetrics: Bytes,
    prometheus: Bytes,
}

/// The latest exposition and when it was rendered. The async lock also
/// makes concurrent scrapes wait for one render instead of each asking.
struct Cache {
    to_daemon: mpsc::Sender<ScrapeRequest>,
    latest: Mutex<Option<(Instant, Arc<Exposition>)>>,
}

impl Cache {
    /// `None` when the daemon is shutting down.
    async fn exposition(&self) -> Option<Arc<Exposition>> {
        let mut latest = self.latest.lock().await;
        if let Some((at, exposition)) = latest.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Some(exposition.clone());
        }
        let (tx, rx) = oneshot::channel();
        self.to_daemon.send(tx).await.ok()?;
        let text = rx.await.ok()?;
        let exposition = Arc::new(Exposition {
            prometheus: Bytes::from(to_prometheus_text(&text)),
            openmetrics: Bytes::from(text),
        });
        *latest = Some((Instant::now(), exposition.clone()));
        Some(exposition)
    }
}

pub async fn serve(listener: TcpListener, to_daemon: mpsc::Sender<ScrapeRequest>) {
    let slots = Slots::new(LIMITS, &METRICS_ENDPOINT);
    let cache = Arc::new(Cache {
        to_daemon,
        latest: Mutex::new(None),
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let accept = || async { listener.accept().await.map(|(stream, _)| stream) };
    accept_loop("metrics endpoint", accept, |stream| {
        // Past the cap with every connection busy: dropping it closes it.
        let Some(slot) = slots.admit(0) else {
            return;
        };
        let slot = Arc::new(slot);
        let (cache, http) = (cache.clone(), http.clone());
        tokio::spawn(async move {
            let serving = slot.clone();
            let service = service_fn(move |req| {
                let (cache, slot) = (cache.clone(), serving.clone());
                async move {
                    let _busy = slot.busy();
                    respond(req, &cache).await
                }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                ended = timeout(MAX_LIFETIME, connection) => match ended {
                    Err(_) => METRICS_ENDPOINT.timed_out(),
                    Ok(Err(err)) if err.is_timeout() => METRICS_ENDPOINT.timed_out(),
                    Ok(_) => {}
                },
                () = slot.evicted() => {}
            }
        });
    })
    .await
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static headers are valid")
}

async fn respond(
    req: Request<Incoming>,
    cache: &Cache,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/metrics" => {}
        "/" => {
            return Ok(reply(
                StatusCode::OK,
                "text/plain",
                "memmon: metrics are at /metrics\n",
            ));
        }
        _ => {
            return Ok(reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /metrics\n",
            ));
        }
    }
    let wants_openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let Some(exposition) = cache.exposition().await else {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "memmon is shutting down\n",
        ));
    };
    Ok(if wants_openmetrics {
        reply(StatusCode::OK, OPENMETRICS, exposition.openmetrics.clone())
    } else {
        reply(
            StatusCode::OK,
            PROMETHEUS_TEXT,
            exposition.prometheus.clone(),
        )
    })
}
