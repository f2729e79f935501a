//! A handle other threads (signals, HTTP) use to stop the loop or make it
//! reload, without touching its state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use super::probes::ProbeRequest;

use mio::Waker;

#[derive(Clone)]
pub struct LoopHandle {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    waker: Arc<Waker>,
    /// `/probe` checks waiting for the loop.
    probes: Arc<Mutex<Vec<ProbeRequest>>>,
    probes_waiting: Arc<AtomicBool>,
    /// The loop's thread: between polls it may sleep (wake spacing), and a
    /// wake must cut that short too.
    loop_thread: Arc<OnceLock<Thread>>,
}

impl LoopHandle {
    pub(super) fn new(waker: Arc<Waker>) -> LoopHandle {
        LoopHandle {
            stop: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            waker,
            probes: Arc::new(Mutex::new(Vec::new())),
            probes_waiting: Arc::new(AtomicBool::new(false)),
            loop_thread: Arc::new(OnceLock::new()),
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

    /// Asks the loop to run a check; its report comes back on `req.reply`.
    pub fn probe(&self, req: ProbeRequest) {
        if let Ok(mut q) = self.probes.lock() {
            q.push(req);
            self.probes_waiting.store(true, Ordering::SeqCst);
        }
        self.wake();
    }

    pub(super) fn probes_waiting(&self) -> bool {
        self.probes_waiting.load(Ordering::Relaxed)
    }

    pub(super) fn take_probes(&self) -> Vec<ProbeRequest> {
        self.probes_waiting.store(false, Ordering::SeqCst);
        self.probes
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// True once per `reload` call.
    pub(super) fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    /// Called by the loop's thread before it runs.
    pub(super) fn attach_loop_thread(&self) {
        let _ = self.loop_thread.set(std::thread::current());
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the event loop: {e}");
        }
        if let Some(t) = self.loop_thread.get() {
            t.unpark();
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
