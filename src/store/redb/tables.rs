//! Helpers for redb tables shared by the driver's files.

use std::cell::OnceCell;

use redb::{ReadOnlyTable, TableDefinition};

use crate::store::StoreError;

/// Opens `def` in `tx` once, into `cell`.
pub fn lazy<'c, K: redb::Key + 'static, V: redb::Value + 'static>(
    cell: &'c OnceCell<ReadOnlyTable<K, V>>,
    tx: &redb::ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<&'c ReadOnlyTable<K, V>, StoreError> {
    if let Some(t) = cell.get() {
        return Ok(t);
    }
    let table = tx.open_table(def)?;
    Ok(cell.get_or_init(|| table))
}
