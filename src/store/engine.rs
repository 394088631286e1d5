//! The storage engine this server runs on: the one place that picks a
//! driver. Everything else opens stores through `driver()` and holds
//! them as `dyn LogStore`, so adding an engine is a folder beside `redb/`
//! and a choice here.

use std::path::Path;
use std::sync::Arc;

use super::redb::Redb;
use super::{Driver, LogStore, StoreError};

/// The driver of this build.
pub fn driver() -> &'static dyn Driver {
    &Redb
}

/// Opens (or creates) the log's store at `path` with the driver of this
/// build.
pub fn open(path: &Path) -> Result<Arc<dyn LogStore>, StoreError> {
    driver().open(path)
}
