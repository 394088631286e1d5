//! The storage driver conformance suite (`sealog::store::conformance`,
//! spec/storage.md "Storage driver contract") run against each driver.

/// The redb driver: `sealog.redb` and its key file.
mod redb {
    sealog::store_conformance!(&sealog::store::redb::Redb);
}
