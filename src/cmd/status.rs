//! `sockpulse status`: one session per target (connect, handshake, a few
//! probes, close) and a verdict for each; or, with `--agent`, what a
//! running agent sees.

use std::sync::Arc;
use std::time::Duration;

use crate::agent_client::{self, FetchError};
use crate::cli::args::StatusArgs;
use crate::cli::output::{print, print_json};
use crate::cli::{Error, Exit};
use crate::clock::Instant;
use crate::config;
use crate::driver::Driver;
use crate::observer::{StatusObserver, TargetReport};
use crate::render;
use crate::session::Mode;
use crate::signals;
use crate::wallclock::unix_now;

pub fn run(args: StatusArgs) -> Result<Exit, Error> {
    if let Some(agent) = &args.agent {
        if args.json {
            let reports = agent_client::fetch_status(agent, args.timeout)?;
            return print_reports(&reports, true);
        }
        if args.watch {
            return watch(agent, args.timeout);
        }
        let (text, exit) = agent_report(agent, args.timeout)?;
        print(&text);
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

/// What a running agent sees, as text: its targets, their last events, its
/// last `/probe` checks.
fn agent_report(agent: &str, timeout: Duration) -> Result<(String, Exit), FetchError> {
    let reports = agent_client::fetch_status(agent, timeout)?;
    let events = agent_client::fetch_events(agent, timeout)?;
    let probes = agent_client::fetch_probes(agent, timeout)?;
    let now = crate::wallclock::unix_now_ms() as f64 / 1000.0;
    let mut text = render::status::table(&reports, unix_now());
    text.push_str(&render::status::recent_events(&events, EVENTS_PER_TARGET, now));
    if !probes.is_empty() {
        text.push_str(&render::status::recent_probes(&probes, now));
    }
    Ok((text, Exit::healthy_if(reports.iter().all(|r| r.healthy))))
}

/// Events shown per target by `status --agent`.
const EVENTS_PER_TARGET: usize = 3;

/// `status --agent --watch`: the report redrawn every second until
/// interrupted; an agent that stops answering is said on screen, and the
/// watch goes on.
fn watch(agent: &str, timeout: Duration) -> Result<Exit, Error> {
    // Clear the screen and home the cursor, as watch(1) does.
    const CLEAR: &str = "\x1b[H\x1b[2J";
    loop {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let body = match agent_report(agent, timeout) {
            Ok((text, _)) => text,
            Err(FetchError::Unreachable(e)) => format!("{e}\n(trying again every second)\n"),
            Err(e) => return Err(e.into()),
        };
        print(&format!("{CLEAR}sockpulse status --agent {agent}    {stamp}\n\n{body}"));
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn print_reports(reports: &[TargetReport], json: bool) -> Result<Exit, Error> {
    if json {
        print_json(&reports)?;
    } else {
        print(&render::status::table(reports, unix_now()));
    }
    Ok(Exit::healthy_if(reports.iter().all(|r| r.healthy)))
}
