//! The /metrics endpoint: a small HTTP/1 server (hyper) on a loopback
//! address by default. Each scrape asks the daemon loop for a fresh
//! exposition, so the numbers are consistent with one another.

use std::{convert::Infallible, net::SocketAddr};

use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ACCEPT, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};

use super::to_prometheus_text;
use crate::throttle::accept_loop;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A scrape waiting for the daemon's OpenMetrics text.
pub type ScrapeRequest = oneshot::Sender<String>;

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub async fn serve(listener: TcpListener, to_daemon: mpsc::Sender<ScrapeRequest>) {
    let accept = || async { listener.accept().await.map(|(stream, _)| stream) };
    accept_loop("metrics endpoint", accept, |stream| {
        let to_daemon = to_daemon.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, to_daemon.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    })
    .await
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

async fn respond(
    req: Request<Incoming>,
    to_daemon: mpsc::Sender<ScrapeRequest>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/metrics" => {}
        "/" => {
            return Ok(reply(
                StatusCode::OK,
                "text/plain",
                "memmon: metrics are at /metrics\n".into(),
            ));
        }
        _ => {
            return Ok(reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /metrics\n".into(),
            ));
        }
    }
    let wants_openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (tx, rx) = oneshot::channel();
    if to_daemon.send(tx).await.is_err() {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "memmon is shutting down\n".into(),
        ));
    }
    let Ok(text) = rx.await else {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "memmon is shutting down\n".into(),
        ));
    };
    Ok(if wants_openmetrics {
        reply(StatusCode::OK, OPENMETRICS, text)
    } else {
        reply(StatusCode::OK, PROMETHEUS_TEXT, to_prometheus_text(&text))
    })
}
