//! The runtime of everything but the loop: the socket and HTTP servers
//! and the workers answering them. It has its own thread, so writing a
//! large reply or accepting connections never delays the loop's next
//! drain of the ring buffer (measured: 20k-region replies written from
//! the loop's thread let records wait ~190 ms in the ring).

use tokio::runtime::{Builder, Handle, Runtime};

pub(super) struct Services(Option<Runtime>);

impl Services {
    pub(super) fn start() -> std::io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("memmon-serve")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    pub(super) fn handle(&self) -> &Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        // A plain drop waits for the runtime's threads, which the loop's
        // runtime forbids; nothing there needs finishing at shutdown.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
