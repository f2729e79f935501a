//! `sockpulse sockets`: a one-shot host TCP report; with `--close-wait-age`
//! it scans twice that far apart and flags CLOSE_WAIT sockets in both.

use std::time::Duration;

use crate::cli::args::SocketsArgs;
use crate::cli::output::{print, print_json};
use crate::cli::{Error, Exit};
use crate::config::{self, KernelConfig, Sources};
use crate::kernel::host::CloseWaitTracker;
use crate::kernel::scan::{self, ScanMethod};
use crate::render;

pub fn run(args: SocketsArgs) -> Result<Exit, Error> {
    let mut kernel = match &args.config {
        Some(path) => config::load(&Sources::file(path))?.kernel,
        None => KernelConfig::default(),
    };
    kernel.watch_ports.extend(&args.watch_ports);
    kernel.watch_ports.sort_unstable();
    kernel.watch_ports.dedup();
    if args.pid.is_some() {
        kernel.netns_pid = args.pid;
    }
    if let Some(method) = args.method.as_deref().and_then(ScanMethod::from_label) {
        kernel.method = method;
    }
    let mut host_cfg = kernel.host_config();
    let ns = kernel.namespace();
    let mut tracker = CloseWaitTracker::default();
    let unreadable = |e: std::io::Error| Error::Usage(format!("cannot read the TCP table: {e}"));
    if let Some(age) = args.close_wait_age {
        host_cfg.close_wait_age_alert = age;
        scan::scan(kernel.method, ns, &host_cfg, &mut tracker).map_err(unreadable)?;
        std::thread::sleep(age);
    } else {
        // A single scan cannot age anything: do not flag CLOSE_WAIT by age.
        host_cfg.close_wait_age_alert = Duration::MAX;
    }
    let (summary, _) = scan::scan(kernel.method, ns, &host_cfg, &mut tracker).map_err(unreadable)?;
    if args.json {
        print_json(&summary)?;
    } else {
        print(&render::sockets::report(&summary));
    }
    let healthy = summary.suspicious.is_empty() && summary.time_wait_port_ratio < args.max_time_wait_ratio;
    Ok(Exit::healthy_if(healthy))
}
