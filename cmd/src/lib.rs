//! The sovd binary's parts, as a library so integration tests can assemble them.

pub mod accounts;
pub mod audit_cli;
pub mod bench;
pub mod bench_log;
pub mod config;
pub mod dr;
pub mod gateway;
pub mod lockouts;
pub mod metrics;
pub mod passwords;
pub mod progress;
pub mod projections_cli;
pub mod replay;
pub mod replay_cli;
pub mod run;
pub mod seed;
pub mod user_cli;
pub mod watch;
