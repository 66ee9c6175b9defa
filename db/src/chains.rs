//! Function chains at the pipeline's stages (this host's scope): which functions run at each
//! stage, in order. Each placed function has an instance number, the slot of its counters in the
//! data plane, kept while it stays in the chain whatever its position.
//!
//! Every change ([`ChainEdit`]) rewrites one stage's chain in one transaction; the data plane
//! publishes the result as a whole generation (appliance `dataplane::chains`).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::params;

use crate::{
    error::{SqlContext, StoreError},
    store::Store,
};

type Result<T> = std::result::Result<T, StoreError>;

/// The stages a chain can sit at, in the data plane's slot order.
pub const CHAIN_STAGES: [&str; 5] = [
    "ON_XDP_TX",
    "ON_XDP_PASS",
    "ON_XDP_REDIRECT",
    "ON_XDP_DROP",
    "ON_XDP_SCALED_EP",
];

/// Functions one stage's chain holds: `MZ_MAX_CHAIN` in ebpf/include/mizar_abi.h.
pub const MAX_CHAIN: usize = 16;
/// Instance numbers run 1 ..= this: `MZ_MAX_FN_INSTANCES - 1` in ebpf/include/mizar_abi.h.
pub const MAX_FN_INSTANCES: usize = 1023;

/// A function placed in a chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainLinkRow {
    pub instance: u16,
    pub stage: String,
    /// 1-based.
    pub position: usize,
    pub function: String,
}

/// A change to one stage's chain. Positions are 1-based, as `mizar chain show` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEdit {
    /// The whole chain, in order (empty: no function).
    Set(Vec<String>),
    /// One function at a position (None: at the end).
    Add { function: String, at: Option<usize> },
    /// The function at a position.
    Remove { position: usize },
    /// The function at `from` moves to `to`; the others keep their order.
    Move { from: usize, to: usize },
}

/// The stage's canonical name (`on_xdp_tx`, `ON_XDP_TX` and `tx` are all ON_XDP_TX).
pub fn parse_stage(input: &str) -> Result<&'static str> {
    let upper = input.trim().to_ascii_uppercase().replace('-', "_");
    CHAIN_STAGES
        .iter()
        .find(|s| **s == upper || s.strip_prefix("ON_XDP_") == Some(upper.as_str()))
        .copied()
        .ok_or(StoreError::UnknownStage {
            input: input.to_owned(),
        })
}

impl Store {
    /// Every stage's chain, in stage order (stages without functions are left out).
    pub fn chains(&self) -> Result<BTreeMap<&'static str, Vec<ChainLinkRow>>> {
        self.read("reading the chains", |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, stage, position, function FROM chain_links \
                     ORDER BY stage, position",
                )
                .ctx("reading the chains")?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(ChainLinkRow {
                        instance: row.get(0)?,
                        stage: row.get(1)?,
                        position: row.get::<_, i64>(2)? as usize,
                        function: row.get(3)?,
                    })
                })
                .ctx("reading the chains")?;
            let mut chains: BTreeMap<&'static str, Vec<ChainLinkRow>> = BTreeMap::new();
            for row in rows {
                let row = row.ctx("reading the chains")?;
                let stage = parse_stage(&row.stage)?;
                chains.entry(stage).or_default().push(row);
            }
            Ok(chains)
        })
    }

    /// One stage's chain, in order.
    pub fn chain(&self, stage: &str) -> Result<Vec<ChainLinkRow>> {
        let stage = parse_stage(stage)?;
        Ok(self.chains()?.remove(stage).unwrap_or_default())
    }

    /// Changes one stage's chain; `known` are the functions that exist (checked here, so an
    /// unknown name changes nothing). Returns the chain as it now is.
    pub fn edit_chain(
        &mut self,
        stage: &str,
        edit: &ChainEdit,
        known: &[&str],
    ) -> Result<Vec<ChainLinkRow>> {
        let stage = parse_stage(stage)?;
        let current = self.chain(stage)?;
        let mut order: Vec<(Option<u16>, String)> = current
            .iter()
            .map(|l| (Some(l.instance), l.function.clone()))
            .collect();
        let position = |p: usize, len: usize| -> Result<usize> {
            if p == 0 || p > len {
                return Err(StoreError::ChainPosition {
                    stage: stage.to_owned(),
                    position: p,
                    len: current.len(),
                });
            }
            Ok(p - 1)
        };
        match edit {
            ChainEdit::Set(functions) => {
                // Functions that stay keep their instance (and counters), matched in order.
                let mut kept = std::mem::take(&mut order);
                for function in functions {
                    let instance = kept
                        .iter()
                        .position(|(_, f)| f == function)
                        .and_then(|i| kept.remove(i).0);
                    order.push((instance, function.clone()));
                }
            }
            ChainEdit::Add { function, at } => {
                let index = match at {
                    None => order.len(),
                    Some(p) => position(*p, order.len() + 1)?,
                };
                order.insert(index, (None, function.clone()));
            }
            ChainEdit::Remove { position: p } => {
                order.remove(position(*p, order.len())?);
            }
            ChainEdit::Move { from, to } => {
                let link = order.remove(position(*from, order.len())?);
                let to = position(*to, order.len() + 1)?;
                order.insert(to, link);
            }
        }
        if let Some((_, unknown)) = order.iter().find(|(_, f)| !known.contains(&f.as_str())) {
            return Err(StoreError::UnknownFunction {
                name: unknown.clone(),
                known: known.join(", "),
            });
        }
        if order.len() > MAX_CHAIN {
            return Err(StoreError::ChainTooLong {
                stage: stage.to_owned(),
                count: order.len(),
                max: MAX_CHAIN,
            });
        }

        self.write("changing a chain", |tx| {
            let mut used: BTreeSet<u16> = {
                let mut stmt = tx
                    .prepare_cached("SELECT id FROM chain_links WHERE stage <> ?1")
                    .ctx("reading the chains")?;
                stmt.query_map([stage], |row| row.get(0))
                    .ctx("reading the chains")?
                    .collect::<rusqlite::Result<_>>()
                    .ctx("reading the chains")?
            };
            used.extend(order.iter().filter_map(|(i, _)| *i));
            if used.len() + order.iter().filter(|(i, _)| i.is_none()).count() > MAX_FN_INSTANCES {
                return Err(StoreError::TooManyFunctionInstances {
                    count: used.len() + 1,
                    max: MAX_FN_INSTANCES,
                });
            }
            tx.execute("DELETE FROM chain_links WHERE stage = ?1", [stage])
                .ctx("changing a chain")?;
            let mut next_free = 1u16;
            for (index, (instance, function)) in order.iter().enumerate() {
                let instance = match instance {
                    Some(i) => *i,
                    None => {
                        while used.contains(&next_free) {
                            next_free += 1;
                        }
                        used.insert(next_free);
                        next_free
                    }
                };
                tx.execute(
                    "INSERT INTO chain_links (id, stage, position, function) VALUES (?1, ?2, ?3, ?4)",
                    params![instance, stage, index as i64 + 1, function],
                )
                .ctx("changing a chain")?;
            }
            Ok(())
        })?;
        self.chain(stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["count", "acl"];

    fn functions(chain: &[ChainLinkRow]) -> Vec<(u16, &str)> {
        chain
            .iter()
            .map(|l| (l.instance, l.function.as_str()))
            .collect()
    }

    #[test]
    fn stages_are_named_as_the_cli_and_the_document_write_them() {
        assert_eq!(parse_stage("on_xdp_tx").unwrap(), "ON_XDP_TX");
        assert_eq!(parse_stage("redirect").unwrap(), "ON_XDP_REDIRECT");
        assert_eq!(parse_stage("scaled-ep").unwrap(), "ON_XDP_SCALED_EP");
        let err = parse_stage("ON_XDP_ABORTED").unwrap_err().to_string();
        assert!(err.contains("ON_XDP_TX, ON_XDP_PASS"), "{err}");
    }

    #[test]
    fn edits_keep_instances_and_renumber_positions() {
        let mut store = Store::open_in_memory().unwrap();
        let add = |f: &str, at| ChainEdit::Add {
            function: f.to_owned(),
            at,
        };
        store.edit_chain("tx", &add("count", None), KNOWN).unwrap();
        store.edit_chain("tx", &add("acl", None), KNOWN).unwrap();
        let chain = store
            .edit_chain("tx", &add("count", Some(1)), KNOWN)
            .unwrap();
        assert_eq!(functions(&chain), [(3, "count"), (1, "count"), (2, "acl")]);
        assert_eq!(
            chain.iter().map(|l| l.position).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let chain = store
            .edit_chain("tx", &ChainEdit::Move { from: 3, to: 1 }, KNOWN)
            .unwrap();
        assert_eq!(functions(&chain), [(2, "acl"), (3, "count"), (1, "count")]);
        let chain = store
            .edit_chain("tx", &ChainEdit::Remove { position: 2 }, KNOWN)
            .unwrap();
        assert_eq!(functions(&chain), [(2, "acl"), (1, "count")]);
        // Set keeps the instance of a function that stays; a freed number is reused.
        let chain = store
            .edit_chain(
                "tx",
                &ChainEdit::Set(vec!["count".into(), "count".into()]),
                KNOWN,
            )
            .unwrap();
        assert_eq!(functions(&chain), [(1, "count"), (2, "count")]);
        // Another stage's instances are its own.
        let other = store
            .edit_chain("pass", &add("count", None), KNOWN)
            .unwrap();
        assert_eq!(functions(&other), [(3, "count")]);
        assert_eq!(store.chains().unwrap().len(), 2);
        store
            .edit_chain("tx", &ChainEdit::Set(Vec::new()), KNOWN)
            .unwrap();
        assert_eq!(
            store.chains().unwrap().into_keys().collect::<Vec<_>>(),
            ["ON_XDP_PASS"]
        );
    }

    #[test]
    fn bad_edits_are_refused_and_change_nothing() {
        let mut store = Store::open_in_memory().unwrap();
        let set = |n: usize| ChainEdit::Set(vec!["count".to_owned(); n]);
        store.edit_chain("tx", &set(2), KNOWN).unwrap();
        let before = store.chains().unwrap();
        let refusals = [
            (
                ChainEdit::Add {
                    function: "nat".into(),
                    at: None,
                },
                "unknown function \"nat\"; functions: count, acl",
            ),
            (
                set(MAX_CHAIN + 1),
                "17 functions at ON_XDP_TX exceed the 16",
            ),
            (
                ChainEdit::Remove { position: 3 },
                "position 3 is not in the chain",
            ),
            (ChainEdit::Remove { position: 0 }, "positions run from 1"),
            (ChainEdit::Move { from: 1, to: 4 }, "position 4"),
            (
                ChainEdit::Add {
                    function: "count".into(),
                    at: Some(4),
                },
                "position 4",
            ),
        ];
        for (edit, message) in refusals {
            let err = store
                .edit_chain("tx", &edit, KNOWN)
                .unwrap_err()
                .to_string();
            assert!(err.contains(message), "{edit:?}: {err}");
            assert_eq!(
                store.chains().unwrap(),
                before,
                "{edit:?} changed the store"
            );
        }
        assert!(store.edit_chain("nowhere", &set(1), KNOWN).is_err());
    }
}
