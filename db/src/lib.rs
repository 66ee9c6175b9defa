//! The config store (SQLite through rusqlite): domain types, validation, schema and migrations,
//! declarative import and export. It is the truth the kernel maps are rebuilt from.
//!
//! Empty until the store issue lands; the data plane is configured through
//! `mizar::dataplane` directly in the meantime.
