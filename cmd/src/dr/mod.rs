//! Disaster recovery: `sovd backup`, `sovd archive` and `sovd restore`, on object storage
//! (see docs/runbooks/disaster_recovery.md and docs/adr/007-disaster-recovery.md).

pub mod archive;
pub mod backup;
pub mod checksum;
pub mod cli;
pub mod layout;
pub mod names;
pub mod private_fs;
pub mod reconcile;
pub mod restore;
pub mod segment;
pub mod signing;
pub mod status;
pub mod storage;
pub mod timeline;
pub mod until;
