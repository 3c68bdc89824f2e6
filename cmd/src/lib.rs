//! The sovd binary's parts, as a library so integration tests can assemble them.

pub mod bench;
pub mod config;
pub mod gateway;
pub mod metrics;
pub mod run;
pub mod seed;
pub mod watch;
