//! `sockpulse status`: one session per target (connect, handshake, a few
//! probes, close) and a verdict for each; or, with `--agent`, what a
//! running agent sees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent_client;
use crate::cli::args::StatusArgs;
use crate::cli::output::{print, print_json};
use crate::cli::{Error, Exit};
use crate::config;
use crate::driver::Driver;
use crate::observer::{StatusObserver, TargetReport};
use crate::render;
use crate::session::Mode;
use crate::signals;
use crate::wallclock::unix_now;

pub fn run(args: StatusArgs) -> Result<Exit, Error> {
    if let Some(agent) = &args.agent {
        let reports = agent_client::fetch_status(agent, args.timeout)?;
        if args.json {
            return print_reports(&reports, true);
        }
        let probes = agent_client::fetch_probes(agent, args.timeout)?;
        let exit = print_reports(&reports, false)?;
        if !probes.is_empty() {
            print(&render::status::recent_probes(
                &probes,
                crate::wallclock::unix_now_ms() as f64 / 1000.0,
            ));
        }
        return Ok(exit);
    }
    let cfg = config::load(&(&args.targets).into())?;
    if cfg.targets.is_empty() {
        return Err(Error::Usage("no targets: give --target URL or --config FILE".into()));
    }
    // One session per target, probing at the status interval.
    let targets: Vec<_> = cfg
        .targets
        .iter()
        .map(|t| {
            let mut spec = (**t).clone();
            spec.connections = 1;
            if spec.timing.ping_interval.is_some() {
                spec.timing.ping_interval = Some(args.interval);
            }
            Arc::new(spec)
        })
        .collect();
    let observer = StatusObserver::new(&targets, args.pings);
    let mut driver = Driver::new(&targets, Mode::OneShot { pings: args.pings }, observer)
        .map_err(|e| Error::Usage(format!("cannot start the event loop: {e}")))?;
    signals::install(driver.handle(), false);
    driver
        .run(Some(Instant::now() + args.timeout), Duration::from_secs(1))
        .map_err(|e| Error::Failed(format!("event loop failed: {e}")))?;
    let reports = driver.into_observer().finish();
    print_reports(&reports, args.json)
}

fn print_reports(reports: &[TargetReport], json: bool) -> Result<Exit, Error> {
    if json {
        print_json(&reports)?;
    } else {
        print(&render::status::table(reports, unix_now()));
    }
    Ok(Exit::healthy_if(reports.iter().all(|r| r.healthy)))
}
