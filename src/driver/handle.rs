//! A handle other threads (signals, HTTP) use to stop the loop or make it
//! reload, without touching its state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;

#[derive(Clone)]
pub struct LoopHandle {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl LoopHandle {
    pub(super) fn new(waker: Arc<Waker>) -> LoopHandle {
        LoopHandle {
            stop: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            waker,
        }
    }

    /// Asks the loop to close every session and return. Returns whether a
    /// stop had already been asked for (a second signal exits at once).
    pub fn stop(&self) -> bool {
        let already = self.stop.swap(true, Ordering::SeqCst);
        self.wake();
        already
    }

    /// Asks the loop to reload its targets.
    pub fn reload(&self) {
        self.reload.store(true, Ordering::SeqCst);
        self.wake();
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// True once per `reload` call.
    pub(super) fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the event loop: {e}");
        }
    }
}

impl std::fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopHandle")
            .field("stop", &self.stop)
            .field("reload", &self.reload)
            .finish()
    }
}
