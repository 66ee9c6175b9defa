//! The database file: creation, reopening, refusal of a newer schema, concurrent writers.

mod common;

use std::{sync::Barrier, thread};

use common::{base_doc, mac, net};
use mizar_db::{Endpoint, Network, SCHEMA_VERSION, Store, StoreError, Topology, Vpc};

#[test]
fn open_creates_the_directory_and_the_schema_and_reopens_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/mizar/mizar.db");
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.path(), path);
    store.apply(&base_doc(), false).unwrap();
    let before = store.snapshot().unwrap();
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.snapshot().unwrap(), before);

    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_database_from_a_newer_mizar_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mizar.db");
    let mut store = Store::open(&path).unwrap();
    store.apply(&base_doc(), false).unwrap();
    drop(store);
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        // Back to a rollback journal, so that any write by mizar would show in the file.
        raw.pragma_update(None, "journal_mode", "delete").unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();

    let err = match Store::open(&path) {
        Err(err) => err,
        Ok(_) => panic!("a newer database was opened"),
    };
    assert!(
        matches!(err, StoreError::TooNew { found, known, .. }
            if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
        "{err:?}"
    );
    let message = err.to_string();
    for part in [
        &format!("has schema version {}", SCHEMA_VERSION + 1),
        "newer than this mizar knows",
        "left untouched",
        "use the mizar release that wrote it, or a newer one",
    ] {
        assert!(message.contains(part), "{message}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file changed");
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "the journal mode changed");
}

/// Two commands creating the same new database at once: one migrates, the other waits for
/// the write lock, sees the schema is there and does nothing.
#[test]
fn concurrent_first_opens_migrate_once() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("mizar.db");
        let barrier = Barrier::new(2);
        thread::scope(|scope| {
            let openers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        let store = Store::open(&path).unwrap();
                        store.schema_version().unwrap()
                    })
                })
                .collect();
            for opener in openers {
                assert_eq!(opener.join().unwrap(), SCHEMA_VERSION, "round {round}");
            }
        });
        let mut store = Store::open(&path).unwrap();
        store.apply(&base_doc(), false).unwrap();
    }
}

#[test]
fn a_file_that_is_not_a_database_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "this is not SQLite, and it is long enough to have a header.....",
    )
    .unwrap();
    let err = match Store::open(&path) {
        Err(err) => err.to_string(),
        Ok(_) => panic!("opened a text file"),
    };
    assert!(err.contains("cannot open the database"), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
}

/// Two threads, two connections, writing at once through the typed API and through apply.
/// Every write lands (no lost update), and when both claim the same IP exactly one wins and
/// the other gets the ordinary validation error, not a database error.
#[test]
fn concurrent_writers_both_land() {
    const EACH: u16 = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mizar.db");
    let mut store = Store::open(&path).unwrap();
    store.apply(&base_doc(), false).unwrap();
    store
        .add_vpc(&Vpc {
            name: "load".into(),
            vni: 999,
            cidr: net("10.0.0.0/8"),
        })
        .unwrap();
    store
        .add_network(&Network::new("load", "big", net("10.1.0.0/16")))
        .unwrap();
    drop(store);

    let barrier = Barrier::new(2);
    let outcomes: Vec<Vec<Result<(), StoreError>>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..2u16)
            .map(|worker| {
                let barrier = &barrier;
                let path = &path;
                scope.spawn(move || {
                    let mut store = Store::open(path).unwrap();
                    barrier.wait();
                    let mut contested = Vec::new();
                    for i in 0..EACH {
                        let name = format!("w{worker}-{i}");
                        let ip = format!("10.1.{}.{}", worker + 1, i + 10).parse().unwrap();
                        let ep = Endpoint::simple(
                            "load",
                            "big",
                            &name,
                            ip,
                            mac(worker * 1000 + i),
                            "h2",
                        );
                        if i % 2 == 0 {
                            store.add_endpoint(&ep).unwrap();
                        } else {
                            // A read-modify-write through apply: the overlay is computed from
                            // what this transaction read, so it must not undo the other's.
                            let mut doc = Topology::default();
                            let mut vpc = base_vpc_spec();
                            vpc.networks[0].endpoints.push(spec_of(&ep));
                            doc.vpcs.push(vpc);
                            store.apply(&doc, false).unwrap();
                        }
                        store.add_bouncer_if_absent(worker, i);
                        // Both race for the same address.
                        let ip = format!("10.1.0.{}", i + 10).parse().unwrap();
                        let rival = Endpoint::simple(
                            "load",
                            "big",
                            format!("c{worker}-{i}"),
                            ip,
                            mac(2000 + worker * 1000 + i),
                            "h3",
                        );
                        contested.push(store.add_endpoint(&rival));
                    }
                    contested
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let store = Store::open(&path).unwrap();
    let endpoints = store.endpoints(Some("load")).unwrap();
    for worker in 0..2 {
        for i in 0..EACH {
            let name = format!("w{worker}-{i}");
            assert!(endpoints.iter().any(|e| e.name == name), "{name} was lost");
        }
    }
    for i in 0..usize::from(EACH) {
        let wins = outcomes.iter().filter(|o| o[i].is_ok()).count();
        assert_eq!(
            wins, 1,
            "address {i}: {:?} / {:?}",
            outcomes[0][i], outcomes[1][i]
        );
        for outcome in outcomes.iter().map(|o| &o[i]) {
            if let Err(err) = outcome {
                assert!(matches!(err, StoreError::EndpointIpTaken { .. }), "{err}");
            }
        }
    }
    assert_eq!(endpoints.len(), 3 * usize::from(EACH));
    // Every other endpoint lives in blue, untouched by the overlays.
    let untouched = common::base_store().snapshot().unwrap();
    assert_eq!(store.snapshot().unwrap().vpc("blue"), untouched.vpc("blue"));
}

fn base_vpc_spec() -> mizar_db::VpcSpec {
    mizar_db::VpcSpec {
        name: "load".into(),
        vni: 999,
        cidr: net("10.0.0.0/8"),
        dividers: vec![],
        networks: vec![mizar_db::NetworkSpec {
            name: "big".into(),
            cidr: net("10.1.0.0/16"),
            gateway: None,
            bouncers: vec![],
            endpoints: vec![],
        }],
    }
}

fn spec_of(ep: &Endpoint) -> mizar_db::EndpointSpec {
    mizar_db::EndpointSpec {
        labels: Vec::new(),
        name: ep.name.clone(),
        ip: ep.ip,
        mac: ep.mac,
        kind: ep.kind,
        bypass_decap: ep.bypass_decap,
        host: ep.host.clone(),
        veth: ep.veth.clone(),
        backends: ep.backends.clone(),
        netns: None,
    }
}

trait Bouncers {
    fn add_bouncer_if_absent(&mut self, worker: u16, i: u16);
}

impl Bouncers for Store {
    /// Both workers add the same bouncers; whoever comes second is told it exists.
    fn add_bouncer_if_absent(&mut self, worker: u16, i: u16) {
        let host = ["gw1", "h2", "h3"][usize::from((worker + i) % 3)];
        match self.add_bouncer("load", "big", host) {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(err) => panic!("{err}"),
        }
    }
}
