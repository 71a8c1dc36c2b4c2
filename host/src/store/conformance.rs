//! What every [`Store`](super::Store) must do, as checks that run against
//! any of them: the unit tests run them on sled, and the integration tests
//! (`tests/tests/store.rs`) on a real PostgreSQL. Each panics on the first
//! behaviour that differs.

use super::{IndexEntry, Record, Records, StoreError, TxError};

/// A small record with a multi and a unique index.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Clone)]
pub struct Note {
    /// Its id.
    pub id: String,
    /// Indexed, several notes per owner.
    pub owner: String,
    /// Indexed, one note per slug.
    pub slug: String,
}

impl Record for Note {
    const COLLECTION: &'static str = "conformance_notes";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![
            IndexEntry::multi("notes_by_owner", &self.owner),
            IndexEntry::unique("notes_by_slug", &self.slug),
        ]
    }
}

/// A note.
pub fn note(id: &str, owner: &str, slug: &str) -> Note {
    Note {
        id: id.into(),
        owner: owner.into(),
        slug: slug.into(),
    }
}

/// Index entries follow their records through insert, update and remove.
pub fn indexes_follow_their_records(records: &Records) {
    records.insert(&note("1", "ada", "first")).expect("insert");
    records.insert(&note("2", "ada", "second")).expect("insert");
    let owned = |owner: &str| {
        records
            .list_by::<Note>("notes_by_owner", owner)
            .expect("list")
            .len()
    };
    assert_eq!(owned("ada"), 2);
    records
        .update::<Note>("2", |n| {
            n.owner = "grace".into();
            Ok(())
        })
        .expect("update");
    assert_eq!(owned("ada"), 1);
    assert_eq!(owned("grace"), 1);
    let err = records
        .update::<Note>("missing", |_| Ok(()))
        .expect_err("no such note");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    records.remove::<Note>("1").expect("remove");
    assert_eq!(owned("ada"), 0);
    assert!(
        records
            .find_unique("notes_by_slug", "first")
            .expect("find")
            .is_none()
    );
    assert_eq!(
        records
            .get_by::<Note>("notes_by_slug", "second")
            .expect("get by"),
        Some(note("2", "grace", "second"))
    );
}

/// Ranges read both ways, with bounds, skips and counts.
pub fn index_ranges_read_both_ways_with_bounds_skip_and_count(records: &Records) {
    for (id, owner) in [
        ("a", "t1\u{0}0003"),
        ("b", "t1\u{0}0001"),
        ("c", "t1\u{0}0002"),
        ("d", "t2\u{0}0001"),
    ] {
        records.insert(&note(id, owner, id)).expect("insert");
    }
    let ids = |pairs: Vec<(String, String)>| -> Vec<String> {
        pairs.into_iter().map(|(_, id)| id).collect()
    };
    let all = records
        .index_range("notes_by_owner", "t1\0", None, None, false, 0, 10)
        .expect("range");
    assert_eq!(all[0], ("t1\u{0}0001".to_owned(), "b".to_owned()));
    assert_eq!(ids(all), ["b", "c", "a"]);
    let newest = records
        .index_range("notes_by_owner", "t1\0", None, None, true, 1, 1)
        .expect("range");
    assert_eq!(ids(newest), ["c"]);
    let bounded = records
        .index_range(
            "notes_by_owner",
            "t1\0",
            Some("0002"),
            Some("0003"),
            false,
            0,
            10,
        )
        .expect("range");
    assert_eq!(ids(bounded), ["c"]);
    let count = |prefix: &str| {
        records
            .index_count("notes_by_owner", prefix, None, None)
            .expect("count")
    };
    assert_eq!(count("t1\0"), 3);
    assert_eq!(count("t2\0"), 1);
    assert_eq!(count("t3\0"), 0);
    let from = records
        .scan_index("notes_by_owner", "t1\u{0}0002", 2)
        .expect("scan");
    assert_eq!(ids(from), ["c", "a"]);
}

/// A unique value has one owner, and a refused write leaves nothing.
pub fn a_unique_value_has_one_owner_and_a_failed_write_leaves_nothing(records: &Records) {
    records.insert(&note("1", "ada", "same")).expect("insert");
    let err = records
        .insert(&note("2", "bob", "same"))
        .expect_err("duplicate slug");
    assert!(err.to_string().contains("already belongs to 1"), "{err}");
    assert!(records.get::<Note>("2").expect("get").is_none());
    assert!(
        records
            .list_by::<Note>("notes_by_owner", "bob")
            .expect("list")
            .is_empty()
    );
    let err = records
        .insert(&note("1", "bob", "other"))
        .expect_err("duplicate id");
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
}

/// Concurrent commits each land whole or leave nothing.
pub async fn concurrent_commits_each_land_or_leave_nothing(records: &Records) {
    records
        .insert(&note("taken", "ada", "dup"))
        .expect("insert");
    // Many commits at once; the ones that claim a taken slug fail alone,
    // after writing their own note first.
    let commits: Vec<_> = (0..200)
        .map(|i| {
            let records = records.clone();
            tokio::spawn(async move {
                let slug = if i % 10 == 0 {
                    "dup".to_owned()
                } else {
                    format!("slug-{i}")
                };
                let id = format!("n{i}");
                records
                    .commit(move |tx| {
                        tx.insert(&note(&id, "bob", &format!("other-{id}")))?;
                        tx.put(&note(&format!("{id}-b"), "bob", &slug))?;
                        Ok(id.clone())
                    })
                    .await
            })
        })
        .collect();
    for (i, commit) in commits.into_iter().enumerate() {
        let outcome = commit.await.expect("task");
        let id = format!("n{i}");
        if i % 10 == 0 {
            let err = outcome.expect_err("a taken slug");
            assert!(
                err.to_string().contains("already belongs to taken"),
                "{err}"
            );
            assert!(records.get::<Note>(&id).expect("get").is_none(), "{id}");
        } else {
            assert_eq!(outcome.expect("commit"), id);
            assert!(records.get::<Note>(&id).expect("get").is_some(), "{id}");
        }
    }
    assert_eq!(
        records.ids_by("notes_by_owner", "bob").expect("ids").len(),
        180 * 2
    );
}

/// Read-modify-write transactions racing on one record lose no update,
/// and racing claims of one unique value have exactly one winner.
pub async fn racing_updates_lose_nothing_and_one_claim_wins(records: &Records) {
    records
        .insert(&note("counter", "0", "counter"))
        .expect("insert");
    let bumps: Vec<_> = (0..64)
        .map(|_| {
            let records = records.clone();
            tokio::spawn(async move {
                records
                    .commit(|tx| {
                        let mut counter = tx.get::<Note>("counter")?.ok_or_else(|| {
                            TxError::from(StoreError::Rejected("counter gone".into()))
                        })?;
                        let n: u32 = counter.owner.parse().unwrap_or_default();
                        counter.owner = (n + 1).to_string();
                        tx.put(&counter)?;
                        Ok(())
                    })
                    .await
            })
        })
        .collect();
    for bump in bumps {
        bump.await.expect("task").expect("bump");
    }
    let counter = records.get::<Note>("counter").expect("get").expect("there");
    assert_eq!(counter.owner, "64", "every increment landed");

    // Each claimant checks the slug is free, then takes it.
    let claims: Vec<_> = (0..32)
        .map(|i| {
            let records = records.clone();
            tokio::spawn(async move {
                records
                    .commit(move |tx| {
                        if let Some(owner) = tx.find_unique("notes_by_slug", "prize")? {
                            return Ok(Err(owner));
                        }
                        tx.insert(&note(&format!("claim-{i}"), "claims", "prize"))?;
                        Ok(Ok(()))
                    })
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for claim in claims {
        if claim.await.expect("task").expect("commit").is_ok() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one claim of the slug won");
    assert_eq!(
        records
            .ids_by("notes_by_owner", "claims")
            .expect("ids")
            .len(),
        1
    );
}

/// A durable write survives closing and opening the store again (`reopen`
/// drops the old handle and returns a new one on the same data); a body
/// that panics is reported and the store goes on.
pub async fn a_committed_write_survives_reopening(open: impl Fn() -> Records) {
    {
        let records = open();
        records
            .put_durably(note("1", "ada", "kept"))
            .await
            .expect("commit");
        let err = records
            .commit(|_| -> Result<(), TxError> { panic!("a bug in a body") })
            .await
            .expect_err("panicked");
        assert!(err.to_string().contains("panicked"), "{err}");
        records
            .put_durably(note("2", "ada", "also"))
            .await
            .expect("commit after a panic");
    }
    let records = open();
    assert_eq!(
        records.ids_by("notes_by_owner", "ada").expect("ids"),
        ["1", "2"]
    );
}

/// The schema version is stored, and a newer one refused.
pub async fn schema_version_is_stored_and_a_newer_one_refused(records: &Records) {
    assert_eq!(
        super::migrate(records).expect("migrate"),
        super::SCHEMA_VERSION
    );
    records.durable().await.expect("flush");
    records.set_meta("schema_version", b"99").expect("set");
    assert!(matches!(
        super::migrate(records),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

/// Long removals in batches take everything listed, and nothing else.
pub async fn removals_in_batches_take_what_is_listed(records: &Records) {
    for i in 0..25 {
        records
            .insert(&note(
                &format!("r{i:02}"),
                &format!("old\u{0}{i:04}"),
                &format!("r{i}"),
            ))
            .expect("insert");
    }
    records
        .insert(&note("keep", "new\u{0}0001", "keep"))
        .expect("insert");
    let removed = records
        .remove_listed::<Note>("notes_by_owner", "old\0", Some("0020"), 7)
        .await
        .expect("remove");
    assert_eq!(removed, 20);
    assert_eq!(
        records
            .index_count("notes_by_owner", "old\0", None, None)
            .expect("count"),
        5
    );
    assert!(records.get::<Note>("keep").expect("get").is_some());
    assert!(records.get::<Note>("r00").expect("get").is_none());
    assert!(records.get::<Note>("r24").expect("get").is_some());
}
