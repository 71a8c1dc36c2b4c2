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
    /// `(tree, keys in the source, keys in the destination)`; the source's
    /// index entries counted without those of `answered`.
    pub trees: Vec<(&'static str, usize, usize)>,
    /// Index entries of the source left out, because the destination's
    /// tables answer for them ([`Store::answered_by_tables`]).
    pub answered: usize,
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
    let mut answered = 0;
    for (tree, name) in [
        (Tree::Records, "records"),
        (Tree::Indexes, "index entries"),
        (Tree::Meta, "metadata"),
    ] {
        let mut entries = from.scan_prefix(tree, b"")?;
        entries.retain(|(key, _)| !(tree == Tree::Meta && LOCAL_META.contains(&key.as_slice())));
        if tree == Tree::Indexes {
            let before = entries.len();
            entries.retain(|(key, _)| !answered_by(to, key));
            answered = before - entries.len();
        }
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
    Ok(Copied { trees, answered })
}

/// Whether the index entry `key` (`index\0…`) is one `to` does not keep.
fn answered_by(to: &dyn Store, key: &[u8]) -> bool {
    let index = key.split(|&b| b == 0).next().unwrap_or_default();
    to.answered_by_tables()
        .iter()
        .any(|name| name.as_bytes() == index)
}
