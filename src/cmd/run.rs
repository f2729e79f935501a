//! `sockpulse run`: the agent, until SIGINT or SIGTERM.

use crate::agent::{self, AgentOptions};
use crate::cli::args::RunArgs;
use crate::cli::{Error, Exit};

pub fn run(args: RunArgs) -> Result<Exit, Error> {
    agent::run(AgentOptions {
        sources: (&args.targets).into(),
        listen_address: args.listen_address,
        telemetry_path: args.telemetry_path,
        enable_lifecycle: args.enable_lifecycle,
        web_config: args.web_config,
        external_url: args.external_url,
        route_prefix: args.route_prefix,
        rtt_log: args.rtt_log,
        shard: args.shard,
    })?;
    Ok(Exit::Ok)
}
