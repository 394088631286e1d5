//! Detections: the rule engine (`engine`: per-user and per-IP state, its
//! bounds, risk), the rules it runs (`rules`, one file each), the runner
//! that feeds it the log in index order and appends its findings, and
//! step-up assurance.

pub mod assurance;
pub mod engine;
mod lru;
mod rules;
pub mod runner;
