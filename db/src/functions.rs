//! Network functions loaded from users' objects (`mizar fn load`): the object is kept in the
//! store, so the data plane can load it again; chains name them like the built-in ones.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::{
    chains::BUILTIN_FUNCTIONS,
    error::{Kind, SqlContext, StoreError},
    store::Store,
};

type Result<T> = std::result::Result<T, StoreError>;

/// Shared program slots of the data plane (`MZ_FN_PROGRAMS` in ebpf/include/mizar_abi.h):
/// the built-in functions take the first ones, loaded functions the rest.
pub const FN_PROGRAM_SLOTS: usize = 64;
/// Functions that can be loaded at once.
pub const MAX_LOADED_FUNCTIONS: usize = FN_PROGRAM_SLOTS - BUILTIN_FUNCTIONS.len();
/// Drop reasons a function may name: `MZ_FN_DROP_REASONS`.
pub const MAX_DROP_REASONS: usize = 8;

/// A loaded function, without its object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedFunction {
    pub name: String,
    /// Its shared program slot: `BUILTIN_FUNCTIONS.len() + slot`.
    pub slot: u32,
    /// The XDP program's name in the object.
    pub program: String,
    pub drop_reasons: Vec<String>,
    pub object_bytes: usize,
}

pub(crate) fn load_functions(conn: &Connection) -> Result<Vec<LoadedFunction>> {
    let ctx = "reading the loaded functions";
    conn.prepare_cached(
        "SELECT name, slot, program, drop_reasons, length(object) FROM loaded_functions \
         ORDER BY name",
    )
    .and_then(|mut stmt| {
        stmt.query_map([], |r| {
            let reasons: String = r.get(3)?;
            Ok(LoadedFunction {
                name: r.get(0)?,
                slot: r.get(1)?,
                program: r.get(2)?,
                drop_reasons: reasons
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                object_bytes: r.get::<_, i64>(4)? as usize,
            })
        })?
        .collect()
    })
    .ctx(ctx)
}

/// Every function a chain may name: the built-in ones, then the loaded ones.
pub(crate) fn known_functions(conn: &Connection) -> Result<Vec<String>> {
    let mut out: Vec<String> = BUILTIN_FUNCTIONS.iter().map(|s| (*s).to_owned()).collect();
    out.extend(load_functions(conn)?.into_iter().map(|f| f.name));
    Ok(out)
}

/// Where a function is placed: "host H at STAGE", "VPC V at STAGE", ...
fn places(conn: &Connection, name: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in crate::chains::load_chains(conn)? {
        if row.function == name {
            out.push(format!("host {} at {}", row.host, row.stage));
        }
    }
    for row in crate::chains::load_scoped_chains(conn)? {
        if row.function == name {
            out.push(match row.endpoint {
                Some(e) => format!("endpoint {e} of VPC {} at {}", row.vpc, row.stage),
                None => format!("VPC {} at {}", row.vpc, row.stage),
            });
        }
    }
    out.dedup();
    Ok(out)
}

impl Store {
    /// The loaded functions.
    pub fn loaded_functions(&self) -> Result<Vec<LoadedFunction>> {
        self.read("reading the loaded functions", load_functions)
    }

    /// A loaded function's object.
    pub fn loaded_function_object(&self, name: &str) -> Result<Vec<u8>> {
        self.read("reading a loaded function", |conn| {
            conn.query_row(
                "SELECT object FROM loaded_functions WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .ctx("reading a loaded function")?
            .ok_or_else(|| not_loaded(conn, name))
        })
    }

    /// Records a function (its object already verified by the data plane). With `replace`, a
    /// function of that name is replaced (keeping its slot); without, it is refused.
    pub fn add_loaded_function(
        &mut self,
        name: &str,
        program: &str,
        drop_reasons: &[String],
        object: &[u8],
        replace: bool,
    ) -> Result<LoadedFunction> {
        crate::validate::check_name(Kind::Function, name)?;
        if BUILTIN_FUNCTIONS.contains(&name) {
            return Err(StoreError::FunctionBuiltIn {
                name: name.to_owned(),
            });
        }
        if drop_reasons.len() > MAX_DROP_REASONS {
            return Err(StoreError::TooMany {
                owner: format!("function {name:?}"),
                what: "drop reasons",
                count: drop_reasons.len(),
                max: MAX_DROP_REASONS,
            });
        }
        for reason in drop_reasons {
            crate::validate::check_name(Kind::Function, reason)?;
        }
        self.write("loading a function", |tx| {
            let existing: Option<u32> = tx
                .query_row(
                    "SELECT slot FROM loaded_functions WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .ctx("reading the loaded functions")?;
            let slot = match (existing, replace) {
                (Some(_), false) => {
                    return Err(StoreError::FunctionAlreadyLoaded {
                        name: name.to_owned(),
                    });
                }
                (Some(slot), true) => slot,
                (None, _) => {
                    let used: Vec<u32> = load_functions(tx)?.iter().map(|f| f.slot).collect();
                    let free = (0..MAX_LOADED_FUNCTIONS as u32).find(|s| !used.contains(s));
                    free.ok_or(StoreError::TooMany {
                        owner: "this host".to_owned(),
                        what: "loaded functions",
                        count: used.len() + 1,
                        max: MAX_LOADED_FUNCTIONS,
                    })?
                }
            };
            tx.execute(
                "INSERT OR REPLACE INTO loaded_functions (name, slot, program, drop_reasons, \
                 object) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, slot, program, drop_reasons.join(","), object],
            )
            .ctx("loading a function")?;
            Ok(())
        })?;
        self.loaded_functions()?
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| StoreError::FunctionNotLoaded {
                name: name.to_owned(),
                known: String::new(),
            })
    }

    /// Forgets a loaded function; refused while a chain holds it.
    pub fn remove_loaded_function(&mut self, name: &str) -> Result<LoadedFunction> {
        let function = self
            .loaded_functions()?
            .into_iter()
            .find(|f| f.name == name);
        self.write("unloading a function", |tx| {
            let Some(function) = function else {
                return Err(not_loaded(tx, name));
            };
            let placed = places(tx, name)?;
            if !placed.is_empty() {
                return Err(StoreError::FunctionPlaced {
                    name: name.to_owned(),
                    places: placed.join(", "),
                });
            }
            tx.execute("DELETE FROM loaded_functions WHERE name = ?1", [name])
                .ctx("unloading a function")?;
            Ok(function)
        })
    }
}

fn not_loaded(conn: &Connection, name: &str) -> StoreError {
    let known = load_functions(conn)
        .map(|f| f.into_iter().map(|f| f.name).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    StoreError::FunctionNotLoaded {
        name: name.to_owned(),
        known: if known.is_empty() {
            "none".to_owned()
        } else {
            known
        },
    }
}
