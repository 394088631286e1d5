//! Operations on a log as a whole: backup and restore, and the auditor
//! that replays a log from outside.

pub mod audit;
pub mod backup;
