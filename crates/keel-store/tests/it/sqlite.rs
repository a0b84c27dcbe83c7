//! The API checks on a SQLite file, plus SQLite's own: migrations and
//! opening by several processes.

use std::path::{Path, PathBuf};

use keel_store::{Store, StoreConfig};
use tempfile::TempDir;

use crate::{api, rec, stats};

/// A store on a new file in its own tempdir (kept alive by the `TempDir`).
pub async fn store() -> (TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log").join("keel.db");
    let store = open(&path).await;
    (dir, path, store)
}

pub async fn open(path: &Path) -> Store {
    Store::open(&StoreConfig::Sqlite {
        path: path.to_owned(),
    })
    .await
    .unwrap()
}

macro_rules! checks {
    ($($name:ident => $check:path;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let (_dir, _path, store) = store().await;
            $check(&store).await;
        }
    )*};
}

checks! {
    round_trip => api::round_trip;
    large_batch => api::large_batch;
    duplicate_ids => api::duplicate_ids;
    feedback => api::feedback;
    list_filters => api::list_filters;
    capture_filters => api::capture_filters;
    prune => api::prune;
    nul_bytes => api::nul_bytes;
    keys => api::keys;
    spend_by_day => api::spend_by_day;
    stats => stats::grouped;
}

fn migrations(path: &Path) -> Vec<(i64, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn migrates_from_empty_and_reopens_as_a_no_op() {
    // Opening creates the directory and file, and runs every migration.
    let (_dir, path, store) = store().await;
    assert_eq!(store.kind(), "sqlite");
    let applied = migrations(&path);
    assert_eq!(applied.iter().map(|m| m.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(applied[0].1 > 1_700_000_000_000, "applied_at is Unix ms");
    store.insert(&[rec("kept", 1)]).await.unwrap();

    // A second open (the CLI, while the server has it open) changes nothing.
    let reader = open(&path).await;
    assert_eq!(migrations(&path), applied);
    assert!(reader.exists("kept").await.unwrap());
    drop((store, reader));
    let _again = open(&path).await;
    assert_eq!(migrations(&path), applied);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let (_dir, path, store) = store().await;
    drop(store);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("INSERT INTO schema_migrations VALUES (99, 0)", [])
        .unwrap();
    let err = Store::open(&StoreConfig::Sqlite { path: path.clone() })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("schema version 99"), "{err}");
}

/// Readers and a second writer share the file: WAL lets a reader in while
/// another connection holds the write lock.
#[tokio::test]
async fn reads_while_another_connection_writes() {
    let (_dir, path, store) = store().await;
    store.insert(&[rec("a", 1)]).await.unwrap();
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert!(store.exists("a").await.unwrap());
    let err = store.insert(&[rec("b", 2)]).await.unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    lock.execute_batch("COMMIT").unwrap();
    store.insert(&[rec("b", 2)]).await.unwrap();
}
