//! Signals: SIGINT and SIGTERM stop the loop (a second one exits at once),
//! SIGHUP reloads the configuration where reloading is on.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::driver::LoopHandle;

/// Starts a thread that turns signals into requests to `handle`; SIGHUP is
/// taken only when `reload` is set.
pub fn install(handle: LoopHandle, reload: bool) {
    let wanted: &[i32] = if reload {
        &[SIGINT, SIGTERM, SIGHUP]
    } else {
        &[SIGINT, SIGTERM]
    };
    let mut signals = match signal_hook::iterator::Signals::new(wanted) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot install signal handlers: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("sockpulse-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    log::info!("SIGHUP: reloading the configuration");
                    handle.reload();
                    continue;
                }
                if handle.stop() {
                    log::warn!("second signal: exiting now");
                    std::process::exit(128 + sig);
                }
                log::info!("signal {sig}: closing sessions");
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the signal thread: {e}");
    }
}
