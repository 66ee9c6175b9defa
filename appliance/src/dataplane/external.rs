//! Network functions from users' objects (`mizar fn load`): loaded with the pipeline's pinned
//! maps (the ones the object declares by name: `mz_meta`, the chains' arrays, counters, and its
//! own), verified by the kernel, and pinned as the function's program, where the chains find
//! it like a built-in one.

use aya::{Ebpf, EbpfLoader, programs::Xdp};

use super::{DataplaneError, PinLayout, function_pin, pin_program};

/// A function loaded into the kernel (verified), not yet pinned.
pub struct ExternalFunction {
    ebpf: Ebpf,
    /// The XDP program's name in the object.
    pub program: String,
}

/// The last lines of a verifier log: the reason is at its end.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl ExternalFunction {
    /// Loads `object`'s XDP program (`program`, or its only one) with the instance's pinned
    /// maps, and has the kernel verify it. Nothing is pinned: a refused object leaves nothing.
    pub fn load(
        pins: &PinLayout,
        object: &[u8],
        program: Option<&str>,
    ) -> Result<Self, DataplaneError> {
        let refused =
            |reason: String| DataplaneError::Invalid(format!("the object is refused: {reason}"));
        if !object.starts_with(b"\x7fELF") {
            return Err(refused(
                "it is not an ELF object; build it with clang -target bpf (see \
                 ebpf/examples/port_drop.c)"
                    .to_owned(),
            ));
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins.maps())
            .load(object)
            .map_err(|err| refused(err.to_string()))?;
        // A chain function reads the packet's metadata: its object declares mz_meta.
        if ebpf.map(mizar_ebpf::maps::META).is_none() {
            return Err(refused(
                "it does not use mz_meta: a chain function includes mizar_fn.h, reads the \
                 metadata with mz_fn_meta() and ends with mz_fn_next or mz_fn_drop"
                    .to_owned(),
            ));
        }
        let xdp: Vec<String> = ebpf
            .programs()
            .filter(|(_, p)| matches!(p, aya::programs::Program::Xdp(_)))
            .map(|(name, _)| name.to_owned())
            .collect();
        let program = match program {
            Some(p) if xdp.iter().any(|x| x == p) => p.to_owned(),
            Some(p) => {
                return Err(refused(format!(
                    "it has no XDP program {p:?}; its XDP programs: {}",
                    xdp.join(", ")
                )));
            }
            None => match xdp.as_slice() {
                [one] => one.clone(),
                [] => return Err(refused("it has no XDP program (SEC(\"xdp\"))".to_owned())),
                many => {
                    return Err(refused(format!(
                        "it has several XDP programs ({}); choose one with --program",
                        many.join(", ")
                    )));
                }
            },
        };
        let prog: &mut Xdp = ebpf
            .program_mut(&program)
            .and_then(|p| p.try_into().ok())
            .expect("an XDP program found above");
        prog.load().map_err(|err| match &err {
            aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            } => refused(format!(
                "the kernel's verifier rejects {program} ({io_error}):\n{}",
                tail(&verifier_log.to_string(), 12)
            )),
            _ => refused(format!("{program}: {err}")),
        })?;
        Ok(Self { ebpf, program })
    }

    /// Pins the program as function `name`'s (replacing the one pinned before).
    pub fn pin(mut self, pins: &PinLayout, name: &str) -> Result<(), DataplaneError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(&self.program)
            .and_then(|p| p.try_into().ok())
            .expect("loaded above");
        pin_program(prog, &function_pin(name), pins)
    }
}

/// Removes function `name`'s pinned program (the kernel frees it once no chain holds it).
pub fn unpin_function(pins: &PinLayout, name: &str) -> Result<(), DataplaneError> {
    let path = pins.program(&function_pin(name));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(DataplaneError::Pin {
            what: format!("function {name}'s program"),
            path,
            reason: err.to_string(),
        }),
    }
}
