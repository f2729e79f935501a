//! Watches `target_files`: a thread reads the matching files every couple
//! of seconds and asks the loop to reload when any appeared, changed or
//! went. (Polling rather than inotify: it follows files written through
//! symlinks and renames, as Kubernetes ConfigMap volumes do, with nothing
//! to get wrong; the files are small.) The patterns follow reloads.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::config::file_sd;
use crate::driver::LoopHandle;

/// How often the files are read.
pub const EVERY: Duration = Duration::from_secs(2);

/// The patterns to watch, replaced by every successful reload.
pub type Patterns = Arc<Mutex<Vec<PathBuf>>>;

pub fn spawn(handle: LoopHandle, patterns: Patterns) -> io::Result<thread::JoinHandle<()>> {
    let mut last = current(&patterns).map(|p| file_sd::signature(&p));
    thread::Builder::new()
        .name("sockpulse-target-files".into())
        .spawn(move || loop {
            thread::sleep(EVERY);
            let Some(p) = current(&patterns) else {
                last = None;
                continue;
            };
            let now = file_sd::signature(&p);
            if last.is_some_and(|l| l != now) {
                log::info!("target files changed: reloading");
                handle.reload();
            }
            last = Some(now);
        })
}

fn current(patterns: &Patterns) -> Option<Vec<PathBuf>> {
    let p = patterns.lock().ok()?.clone();
    (!p.is_empty()).then_some(p)
}
