//! `actionhost store copy`: every key of one store into another, empty one
//! (sled into PostgreSQL, to move up), then a count of both sides.

use super::{Result, Store, StoreError, Tree};

/// Keys written per transaction.
const BATCH: usize = 500;

/// sled-only bookkeeping that has no meaning in another store.
const LOCAL_META: &[&[u8]] = &[b"store.generation"];

/// How many keys each tree holds, on both sides after a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// `(tree, keys in the source, keys in the destination)`.
    pub trees: Vec<(&'static str, usize, usize)>,
}

/// Every key (as text starts with no 0xFF byte, this bounds them all).
const ALL: (&[u8], &[u8]) = (b"", b"\xFF");

/// Copies every record, index entry and metadata value of `from` into
/// `to`, which must hold no record yet; then counts both.
pub fn copy(from: &dyn Store, to: &dyn Store) -> Result<Copied> {
    let present = to.count_range(Tree::Records, ALL.0, ALL.1)?;
    if present > 0 {
        return Err(StoreError::Rejected(format!(
            "the destination already holds {present} records; copy into an empty database"
        )));
    }
    let mut trees = Vec::new();
    for (tree, name) in [
        (Tree::Records, "records"),
        (Tree::Indexes, "index entries"),
        (Tree::Meta, "metadata"),
    ] {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = from
            .scan_prefix(tree, b"")?
            .into_iter()
            .filter(|(key, _)| !(tree == Tree::Meta && LOCAL_META.contains(&key.as_slice())))
            .collect();
        for chunk in entries.chunks(BATCH) {
            to.transact(&|tx| {
                for (key, value) in chunk {
                    tx.insert(tree, key, value)?;
                }
                Ok(())
            })?;
        }
        let copied = to.count_range(tree, ALL.0, ALL.1)?;
        trees.push((name, entries.len(), copied));
    }
    if let Some((name, source, destination)) = trees.iter().find(|(_, s, d)| s != d) {
        return Err(StoreError::Storage(format!(
            "the copy does not add up: {source} {name} in the source, {destination} in the destination"
        )));
    }
    Ok(Copied { trees })
}
