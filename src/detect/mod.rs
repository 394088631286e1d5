//! Detections: the rule engine, the runner that feeds it the log in index
//! order and appends its findings, and step-up assurance.

pub mod assurance;
pub mod engine;
pub mod runner;
