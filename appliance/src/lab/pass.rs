//! `mz_pass` (ebpf/c/pass.c), attached to the receiving end of a lab veth so that frames XDP_TX'ed
//! or redirected into it are received.
//!
//! A generic-mode fallback would be useless here, so there is none (see [`PassProgram::attach`]).

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, LinkError},
    },
};
use mizar_ebpf::{PASS_OBJECT, PASS_PROGRAM};

use super::{LabError, NetNs};

/// `mz_pass`, loaded once and attachable to any number of interfaces.
pub struct PassProgram {
    ebpf: Ebpf,
}

impl PassProgram {
    pub fn load() -> Result<Self, LabError> {
        let mut ebpf = EbpfLoader::new()
            .load(PASS_OBJECT)
            .map_err(|source| LabError::LoadPass(Box::new(source)))?;
        program(&mut ebpf)?
            .load()
            .map_err(|source| LabError::PassProgram(Box::new(source)))?;
        Ok(Self { ebpf })
    }

    /// Attaches `mz_pass` to `ifname` in `ns`, natively: what it is for happens only in the
    /// driver (a veth runs its XDP receive path only with a native program), so generic mode
    /// would attach and help nothing. The program stays attached while the returned link lives,
    /// or, once pinned, until the pin is removed or the interface is gone.
    pub fn attach(&mut self, ns: &NetNs, ifname: &str) -> Result<PassLink, LabError> {
        let prog = program(&mut self.ebpf)?;
        let attach_error = |source: ProgramError| LabError::AttachPass {
            namespace: ns.name().to_owned(),
            ifname: ifname.to_owned(),
            source: Box::new(source),
        };
        // aya looks the interface up, and the kernel resolves its index, in the calling thread's
        // namespace.
        let id = {
            let _inside = ns.enter()?;
            prog.attach(ifname, XdpMode::Driver).map_err(attach_error)?
        };
        let link = prog.take_link(id).map_err(attach_error)?;
        let link: FdLink = link
            .try_into()
            .map_err(|err: LinkError| LabError::PassLink {
                namespace: ns.name().to_owned(),
                ifname: ifname.to_owned(),
                reason: err.to_string(),
            })?;
        Ok(PassLink {
            link,
            namespace: ns.name().to_owned(),
            ifname: ifname.to_owned(),
        })
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, LabError> {
    ebpf.program_mut(PASS_PROGRAM)
        .ok_or(LabError::MissingPassProgram {
            program: PASS_PROGRAM,
        })?
        .try_into()
        .map_err(|source| LabError::PassProgram(Box::new(source)))
}

/// `mz_pass` attached to an interface: detached when this drops, unless pinned.
#[derive(Debug)]
pub struct PassLink {
    link: FdLink,
    namespace: String,
    ifname: String,
}

impl PassLink {
    /// Pins the link at `path` (on a bpffs), so the program stays attached after this process
    /// exits; removing the pin (or the interface) detaches it.
    pub fn pin(self, path: &Path) -> Result<PathBuf, LabError> {
        self.link
            .pin(path)
            .map_err(|err| LabError::Pin {
                what: format!("mz_pass link on {} in {}", self.ifname, self.namespace),
                path: path.to_owned(),
                reason: err.to_string(),
            })
            .map(|_| path.to_owned())
    }
}
