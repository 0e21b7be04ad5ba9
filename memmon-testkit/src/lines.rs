//! A child's output, line by line, as it comes.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Reads a child's pipe line by line on a thread: every line is kept, and
/// can be waited for. The thread drains the pipe to its end, so the writer
/// never blocks, even after the collector is dropped.
pub struct LineCollector {
    lines: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
    reader: Option<thread::JoinHandle<()>>,
}

impl LineCollector {
    pub fn new(pipe: impl Read + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Self {
            lines,
            rx,
            reader: Some(reader),
        }
    }

    /// The first new line that satisfies `pred`, or None at the timeout or
    /// when the pipe closes.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        self.wait(pred, timeout).ok()
    }

    /// The first new line that satisfies `pred`, or how the wait ended:
    /// the channel itself says whether the pipe closed (the reader thread
    /// may not have finished yet when its sender is gone).
    fn wait(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(_) => {}
                Err(end) => return Err(end),
            }
        }
    }

    /// The first new line holding `needle`; the error says whether the
    /// output ended first or time ran out, and what came before.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.wait(|l| l.contains(needle), timeout).map_err(|end| {
            let how = match end {
                RecvTimeoutError::Disconnected => "before the output ended".to_owned(),
                RecvTimeoutError::Timeout => format!("within {timeout:?}"),
            };
            format!("no `{needle}` {how}: {}", self.all().join(" | "))
        })
    }

    /// The next line, or None at the timeout or when the pipe closes.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The lines kept so far and from now on, readable after the
    /// collector itself is handed off (e.g. to [`LineCollector::finish`]
    /// on another thread).
    pub fn shared(&self) -> Arc<Mutex<Vec<String>>> {
        self.lines.clone()
    }

    /// Waits for the pipe to close and returns every line.
    pub fn finish(mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.all()
    }
}

#[cfg(test)]
mod tests {
    use super::LineCollector;
    use std::time::Duration;

    #[test]
    fn lines_are_waited_for_and_kept() {
        let lines = LineCollector::new(&b"one\nmemmon: daemon ready: 3\nthree\n"[..]);
        let ready = lines.wait_for_line("daemon ready", Duration::from_secs(5));
        assert_eq!(ready.as_deref(), Ok("memmon: daemon ready: 3"));
        let missing = lines
            .wait_for_line("never", Duration::from_secs(5))
            .unwrap_err();
        assert!(missing.contains("before the output ended"), "{missing}");
        assert!(missing.contains("one | memmon"), "{missing}");
        assert_eq!(lines.finish(), ["one", "memmon: daemon ready: 3", "three"]);
    }
}
