//! Reading the daemon's /metrics: one plain HTTP GET, one sample.

use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// The body of one HTTP/1.0 GET of `url` (`http://HOST:PORT/PATH`); an
/// error for anything but a 200.
pub fn http_get(url: &str, timeout: Duration) -> io::Result<String> {
    let fail = |what: String| io::Error::other(format!("GET {url}: {what}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("not an http:// URL".into()))?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream =
        TcpStream::connect(host).map_err(|e| fail(format!("connecting to {host}: {e}")))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| fail(format!("reading the reply: {e}")))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("no end of the HTTP header".into()))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(fail(head.lines().next().unwrap_or("").to_owned()));
    }
    Ok(body.to_owned())
}

/// The value of sample `name` + `labels` (e.g. `{reason="lost"}`, or ""
/// for an unlabelled one) in a Prometheus exposition.
pub fn metric(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{labels} ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# TYPE memmon_events_total counter\n\
                    memmon_events_total 1234\n\
                    memmon_events_lost_total 0\n\
                    memmon_syscalls_total{syscall=\"mmap\",group=\"x\"} 7\n\
                    process_resident_memory_bytes 2.5e+07\n";
        assert_eq!(metric(text, "memmon_events_total", ""), Some(1234.0));
        assert_eq!(metric(text, "memmon_events_lost_total", ""), Some(0.0));
        assert_eq!(
            metric(text, "process_resident_memory_bytes", ""),
            Some(2.5e7)
        );
        assert_eq!(metric(text, "memmon_syscalls_total", ""), None);
        assert_eq!(metric(text, "memmon_events", ""), None);
        assert_eq!(
            metric(
                text,
                "memmon_syscalls_total",
                "{syscall=\"mmap\",group=\"x\"}"
            ),
            Some(7.0)
        );
    }
}
