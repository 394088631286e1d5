//! A witness's state in redb (`witness.redb`): one table, `latest`, log
//! origin → what the witness stored for it. Each update is one durable
//! transaction (fsync before `set_latest` returns).

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::store::{StoreError, WitnessState};

const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("latest");

/// `store::WitnessState` in a redb database.
pub struct RedbWitness {
    db: Database,
}

impl RedbWitness {
    /// Opens (or creates) the witness's database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(LATEST)?;
        tx.commit()?;
        Ok(RedbWitness { db })
    }
}

impl WitnessState for RedbWitness {
    fn latest(&self, origin: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LATEST)?;
        Ok(t.get(origin)?.map(|v| v.value().to_vec()))
    }

    fn set_latest(&self, origin: &str, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(LATEST)?.insert(origin, value)?;
        tx.commit()?;
        Ok(())
    }
}
