//! What the agent does with session events: `metrics` turns them into
//! Prometheus series, logs and the live status of a running agent; `report`
//! folds them into the per-target reports of `status`; `digest` keeps the
//! log readable when many sessions fail at once; `lifetime` finds a limit
//! on how long the path lets sessions live.

mod digest;
mod endpoints;
mod lifetime;
pub mod metrics;
pub mod report;
mod target_info;

pub use metrics::MetricsObserver;
pub use report::{StatusObserver, TargetReport};
