//! Connection settings and the append-only migrations, counted in `PRAGMA user_version`.
//!
//! A small equivalent of rusqlite_migration rather than the crate: the migrations run in one
//! IMMEDIATE transaction that re-reads the version after taking the write lock, so two `mizar`
//! commands opening a fresh database at once cannot both apply migration 1.

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{SqlContext, StoreError};

/// How long a command waits for another one's write transaction before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every migration, oldest first. Append only: never edit or reorder a released entry.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_endpoint_mac_index.sql"),
    include_str!("../migrations/0003_endpoints_host_network_index.sql"),
    include_str!("../migrations/0004_endpoint_netns.sql"),
    include_str!("../migrations/0005_chains.sql"),
    include_str!("../migrations/0006_ddos.sql"),
    include_str!("../migrations/0007_rate_limits.sql"),
    include_str!("../migrations/0008_acl.sql"),
    include_str!("../migrations/0009_ddos_syn.sql"),
    include_str!("../migrations/0010_scoped_chains.sql"),
    include_str!("../migrations/0011_loaded_functions.sql"),
    include_str!("../migrations/0012_chain_enabled.sql"),
];

/// The schema version this build writes: the number of migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Sets the connection up and brings the schema to [`SCHEMA_VERSION`]. A database newer than
/// this build is refused before anything is written to it (not even the journal mode).
pub(crate) fn prepare(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    // The first read also tells a file that is not SQLite at all.
    let found = user_version(conn).map_err(open_err)?;
    check_version(found, SCHEMA_VERSION, path)?;

    enable_wal(conn).map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open_err)?;
    // The default page cache (2 MiB) is smaller than the endpoints table and its indexes at
    // 100,000 endpoints, so a large apply would re-read index pages for every insert. 64 MiB
    // is a ceiling: pages are allocated as they are used.
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(open_err)?;
    migrate(conn, MIGRATIONS, path)
}

/// WAL: readers (the dashboard, `status`) never block the writer, nor the writer them.
///
/// Switching a new database to WAL takes exclusive access for a moment, and SQLite reports
/// another connection's lock here at once instead of through the busy handler (seen with two
/// commands creating the same database together), so this retries until [`BUSY_TIMEOUT`].
/// An in-memory database stays in "memory" mode, which is fine.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get::<_, String>(0))
        {
            Ok(_) => return Ok(()),
            Err(err)
                if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(5));
            }
            Err(err) => return Err(err),
        }
    }
}

fn check_version(found: i64, known: i64, path: &Path) -> Result<(), StoreError> {
    if found > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known,
        });
    }
    if found < 0 {
        return Err(StoreError::Corrupt {
            what: "schema version",
            value: found.to_string(),
        });
    }
    Ok(())
}

/// Applies the migrations the database lacks, all in one transaction.
pub(crate) fn migrate(
    conn: &mut Connection,
    migrations: &[&str],
    path: &Path,
) -> Result<(), StoreError> {
    let known = migrations.len() as i64;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting the schema migration")?;
    // Another command may have migrated between our first look and the write lock.
    let found = user_version(&tx).ctx("reading the schema version")?;
    check_version(found, known, path)?;
    if found == known {
        return Ok(());
    }
    for sql in &migrations[found as usize..] {
        tx.execute_batch(sql).ctx("migrating the schema")?;
    }
    tx.pragma_update(None, "user_version", known)
        .ctx("recording the schema version")?;
    tx.commit().ctx("committing the schema migration")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn every_migration_applies_from_empty_one_at_a_time() {
        let mut conn = fresh();
        let path = Path::new(":memory:");
        for n in 1..=MIGRATIONS.len() {
            migrate(&mut conn, &MIGRATIONS[..n], path).unwrap();
            assert_eq!(user_version(&conn).unwrap(), n as i64);
            let problems: Vec<String> = conn
                .prepare("PRAGMA foreign_key_check")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(problems.is_empty(), "{problems:?}");
        }
        assert_eq!(
            tables(&conn),
            [
                "acl_rules",
                "acl_vpcs",
                "chain_links",
                "ddos_blocks",
                "ddos_limits",
                "ddos_syn_limits",
                "endpoint_backends",
                "endpoint_netns",
                "endpoints",
                "hosts",
                "loaded_functions",
                "network_bouncers",
                "networks",
                "rate_limits",
                "scoped_chain_links",
                "vpc_dividers",
                "vpcs"
            ]
        );
    }

    #[test]
    fn all_migrations_at_once_and_again_is_a_no_op() {
        let mut conn = fresh();
        let path = Path::new(":memory:");
        migrate(&mut conn, MIGRATIONS, path).unwrap();
        let before = tables(&conn);
        migrate(&mut conn, MIGRATIONS, path).unwrap();
        assert_eq!(tables(&conn), before);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = fresh();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, MIGRATIONS, Path::new("x.db")).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found, known, .. }
            if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION));
        assert!(tables(&conn).is_empty());
    }
}
