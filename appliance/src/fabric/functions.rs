//! Functions loaded from users' objects through the one change path: verified by the kernel
//! before the store records them, pinned where chains find them, loaded again by `up`.

use std::collections::BTreeMap;

use mizar_db::{LoadedFunction, Store};
use mizar_ebpf::BUILTIN_FUNCTIONS;

use super::{FabricError, Instance};
use crate::dataplane::{Chains, DataplaneError, ExternalFunction, unpin_function};

const _: () = assert!(mizar_db::FN_PROGRAM_SLOTS == mizar_ebpf::abi::MZ_FN_PROGRAMS as usize);

/// Every function's shared program slot (for the chains of VPCs and endpoints): the built-in
/// ones first, then the loaded ones by their stored slot.
pub fn function_slots(store: &Store) -> Result<BTreeMap<String, u32>, FabricError> {
    let mut out: BTreeMap<String, u32> = BUILTIN_FUNCTIONS
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.to_owned(), i as u32))
        .collect();
    for f in store.loaded_functions()? {
        out.insert(f.name, BUILTIN_FUNCTIONS.len() as u32 + f.slot);
    }
    Ok(out)
}

impl Instance {
    /// Loads a function from `object`: verified by the kernel first (a refusal changes
    /// nothing), then recorded in the store and pinned. With `replace`, a loaded function of
    /// that name is replaced and the chains holding it run the new program (whole generations).
    pub fn load_function(
        &self,
        name: &str,
        object: &[u8],
        program: Option<&str>,
        drop_reasons: &[String],
        replace: bool,
    ) -> Result<LoadedFunction, FabricError> {
        let _lock = self.lock()?;
        let mut store = self.existing_store()?;
        if !self.is_up() {
            return Err(FabricError::Dataplane(DataplaneError::Invalid(
                "the data plane is down: a function is verified by loading it into the kernel; \
                 run `mizar up` first"
                    .to_owned(),
            )));
        }
        if !replace && store.loaded_functions()?.iter().any(|f| f.name == name) {
            return Err(mizar_db::StoreError::FunctionAlreadyLoaded {
                name: name.to_owned(),
            }
            .into());
        }
        let loaded = ExternalFunction::load(&self.pins(), object, program)?;
        let row =
            store.add_loaded_function(name, &loaded.program, drop_reasons, object, replace)?;
        let behind = |err| FabricError::Behind(Box::new(err));
        loaded
            .pin(&self.pins(), name)
            .map_err(|e| behind(e.into()))?;
        Chains::open(&self.pins())
            .and_then(|mut c| {
                c.set_shared_program(BUILTIN_FUNCTIONS.len() as u32 + row.slot, Some(name))
            })
            .map_err(|e| behind(e.into()))?;
        if replace {
            self.publish_chains(&store).map_err(behind)?;
        }
        Ok(row)
    }

    /// Unloads a function no chain holds.
    pub fn unload_function(&self, name: &str) -> Result<LoadedFunction, FabricError> {
        let _lock = self.lock()?;
        let mut store = self.existing_store()?;
        let row = store.remove_loaded_function(name)?;
        if self.is_up() {
            let behind = |err: DataplaneError| FabricError::Behind(Box::new(err.into()));
            Chains::open(&self.pins())
                .and_then(|mut c| {
                    c.set_shared_program(BUILTIN_FUNCTIONS.len() as u32 + row.slot, None)
                })
                .map_err(behind)?;
            unpin_function(&self.pins(), name).map_err(behind)?;
        }
        Ok(row)
    }

    /// Loads and pins every function the store holds (what `up` does before publishing the
    /// chains); a function the kernel now refuses fails `up` with its reason.
    pub(super) fn load_stored_functions(&self, store: &Store) -> Result<usize, FabricError> {
        let functions = store.loaded_functions()?;
        for f in &functions {
            let object = store.loaded_function_object(&f.name)?;
            ExternalFunction::load(&self.pins(), &object, Some(&f.program))
                .map_err(|err| {
                    DataplaneError::Invalid(format!("loaded function {:?}: {err}", f.name))
                })?
                .pin(&self.pins(), &f.name)?;
        }
        Ok(functions.len())
    }
}
