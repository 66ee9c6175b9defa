//! Building a [`LabSpec`] into namespaces, links and pins, and taking it all down again.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use super::{
    BRIDGE, ENDPOINT_IFNAME, Ipv4Net, LabError, LabSpec, MacAddr, NetNs, PassProgram,
    UNDERLAY_IFNAME, delete_namespace, list_namespaces, require_tools,
    spec::{DEFAULT_PIN_ROOT, host_ifname, pass_pin, switch_port, validate_prefix},
    veth_pair,
};
use crate::dataplane::ensure_bpffs;

/// A simulated host of a [`Lab`].
#[derive(Debug)]
pub struct LabHost {
    pub name: String,
    pub ns: NetNs,
    /// Its underlay address, with the underlay's prefix length.
    pub underlay_ip: Ipv4Net,
    pub underlay_ifname: String,
    pub underlay_ifindex: u32,
    pub underlay_mac: MacAddr,
    /// Its underlay veth's peer: a port of the switch's bridge, running `mz_pass`.
    pub switch_port: String,
}

/// An endpoint of a [`Lab`].
#[derive(Debug)]
pub struct LabEndpoint {
    pub name: String,
    /// Index of its host in [`Lab::hosts`].
    pub host: usize,
    pub vni: u32,
    pub ip: Ipv4Net,
    pub mac: MacAddr,
    pub ns: NetNs,
    /// Its interface, in its own namespace.
    pub ifname: String,
    pub ifindex: u32,
    /// Its veth's other end, in its host's namespace: where the data plane attaches egress and
    /// redirects to deliver.
    pub host_ifname: String,
    pub host_ifindex: u32,
    pub host_mac: MacAddr,
}

/// What is left of a lab: its namespaces and pin directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub namespaces: Vec<String>,
    pub pin_dirs: Vec<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.pin_dirs.is_empty()
    }

    /// "namespaces a, b; pin directories /x".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.namespaces.is_empty() {
            parts.push(format!("namespaces {}", self.namespaces.join(", ")));
        }
        if !self.pin_dirs.is_empty() {
            let dirs: Vec<String> = self
                .pin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            parts.push(format!("pin directories {}", dirs.join(", ")));
        }
        if parts.is_empty() {
            "nothing".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// A built lab. Dropping it (or [`Lab::down`]) deletes every namespace it made, and so every
/// veth, the bridge and the XDP programs on them, and removes its pin directory.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    pin_dir: PathBuf,
    switch: Option<NetNs>,
    hosts: Vec<LabHost>,
    endpoints: Vec<LabEndpoint>,
    kept: bool,
}

impl Lab {
    /// Builds `spec`: the switch namespace with its bridge, a namespace per host with its
    /// underlay veth on the bridge, a namespace per endpoint with its veth into its host. Refuses
    /// to build over a lab of the same prefix. On failure, what was made is removed.
    pub fn build(spec: &LabSpec) -> Result<Self, LabError> {
        spec.validate()?;
        require_tools(&[("ip", "iproute2")])?;
        let found = find(&spec.prefix, &spec.pin_root)?;
        if !found.is_empty() {
            return Err(LabError::Exists {
                prefix: spec.prefix.clone(),
                found,
            });
        }
        {
            // Two labs built at once on a machine without the mount must not mount bpffs twice
            // (the second would hide what the first pins).
            static MOUNT: Mutex<()> = Mutex::new(());
            let _one_at_a_time = MOUNT.lock().unwrap_or_else(|e| e.into_inner());
            ensure_bpffs(&spec.pin_root)?;
        }
        let pin_dir = spec.pin_dir();
        let mut lab = Self {
            prefix: spec.prefix.clone(),
            pin_dir: pin_dir.clone(),
            switch: None,
            hosts: Vec::new(),
            endpoints: Vec::new(),
            kept: false,
        };
        // From here on, returning early drops `lab`, which removes what exists so far.
        fs::create_dir(&pin_dir).map_err(|source| LabError::PinDir {
            path: pin_dir.clone(),
            source,
        })?;
        let switch = lab.switch.insert(NetNs::create(&spec.switch_namespace())?);
        switch.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        switch.ip(&["link", "set", BRIDGE, "up"])?;

        let mut pass = PassProgram::load()?;
        let underlay_mtu = spec.underlay_mtu.to_string();
        for host in &spec.hosts {
            let ns = NetNs::create(&spec.namespace(&host.name))?;
            let port = switch_port(&host.name);
            veth_pair(
                &ns,
                UNDERLAY_IFNAME,
                Some(host.underlay_mac()),
                switch,
                &port,
                None,
            )?;
            ns.ip(&["link", "set", UNDERLAY_IFNAME, "mtu", &underlay_mtu])?;
            switch.ip(&["link", "set", &port, "mtu", &underlay_mtu, "master", BRIDGE])?;
            let underlay_ip = Ipv4Net::new_assert(host.ip, spec.underlay.prefix_len());
            ns.ip(&[
                "addr",
                "add",
                &underlay_ip.to_string(),
                "dev",
                UNDERLAY_IFNAME,
            ])?;
            // The data plane redirects into the underlay veth and XDP_TXes out of it: the
            // bridge port must run XDP to receive, as a NIC's wire simply would.
            pass.attach(switch, &port)?
                .pin(&pass_pin(&pin_dir, "switch", &port))?;
            lab.hosts.push(LabHost {
                name: host.name.clone(),
                underlay_ip,
                underlay_ifname: UNDERLAY_IFNAME.to_owned(),
                underlay_ifindex: ns.ifindex(UNDERLAY_IFNAME)?,
                underlay_mac: ns.mac(UNDERLAY_IFNAME)?,
                switch_port: port,
                ns,
            });
        }

        let endpoint_mtu = spec.endpoint_mtu.to_string();
        for ep in &spec.endpoints {
            let host_index = lab
                .hosts
                .iter()
                .position(|h| h.name == ep.host)
                .expect("validated: the endpoint's host exists");
            let host = &lab.hosts[host_index];
            let ns = NetNs::create(&spec.namespace(&ep.name))?;
            let host_if = host_ifname(&ep.name);
            veth_pair(&host.ns, &host_if, None, &ns, ENDPOINT_IFNAME, Some(ep.mac))?;
            host.ns
                .ip(&["link", "set", &host_if, "mtu", &endpoint_mtu])?;
            ns.ip(&["link", "set", ENDPOINT_IFNAME, "mtu", &endpoint_mtu])?;
            ns.ip(&["addr", "add", &ep.ip.to_string(), "dev", ENDPOINT_IFNAME])?;
            if let Some(gateway) = ep.gateway {
                ns.ip(&[
                    "route",
                    "add",
                    "default",
                    "via",
                    &gateway.to_string(),
                    "dev",
                    ENDPOINT_IFNAME,
                ])?;
            }
            // The egress program forwards what the endpoint sends without finishing checksums;
            // the data plane redirects into this veth (GRO or XDP needed to receive) and
            // XDP_TXes proxy-ARP replies into it (XDP needed). DESIGN.md, pitfalls.
            ns.disable_tx_checksum(ENDPOINT_IFNAME)?;
            ns.enable_gro(ENDPOINT_IFNAME)?;
            pass.attach(&ns, ENDPOINT_IFNAME)?.pin(&pass_pin(
                &pin_dir,
                &ep.name,
                ENDPOINT_IFNAME,
            ))?;
            lab.endpoints.push(LabEndpoint {
                name: ep.name.clone(),
                host: host_index,
                vni: ep.vni,
                ip: ep.ip,
                mac: ns.mac(ENDPOINT_IFNAME)?,
                ifname: ENDPOINT_IFNAME.to_owned(),
                ifindex: ns.ifindex(ENDPOINT_IFNAME)?,
                host_ifindex: host.ns.ifindex(&host_if)?,
                host_mac: host.ns.mac(&host_if)?,
                host_ifname: host_if,
                ns,
            });
        }
        Ok(lab)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the lab pins (its `mz_pass` links); removed with the lab.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The switch namespace, holding the bridge [`BRIDGE`].
    pub fn switch(&self) -> &NetNs {
        self.switch
            .as_ref()
            .expect("a built lab has its switch until it is taken down")
    }

    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    pub fn endpoints(&self) -> &[LabEndpoint] {
        &self.endpoints
    }

    pub fn host(&self, name: &str) -> Option<&LabHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn endpoint(&self, name: &str) -> Option<&LabEndpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// Every namespace of the lab: switch, hosts, endpoints.
    pub fn namespaces(&self) -> Vec<&str> {
        self.switch
            .iter()
            .map(NetNs::name)
            .chain(self.hosts.iter().map(|h| h.ns.name()))
            .chain(self.endpoints.iter().map(|e| e.ns.name()))
            .collect()
    }

    /// Removes everything the lab made, reporting what could not be removed (dropping the lab
    /// does the same and only logs failures).
    pub fn down(mut self) -> Result<(), LabError> {
        self.teardown()
    }

    /// Leaves the lab in place when this process goes on or exits (`mizar demo`): its
    /// namespaces and pins stay until [`Lab::remove_by_prefix`].
    pub fn keep(mut self) {
        self.kept = true;
        for ep in self.endpoints.drain(..) {
            ep.ns.keep();
        }
        for host in self.hosts.drain(..) {
            host.ns.keep();
        }
        if let Some(switch) = self.switch.take() {
            switch.keep();
        }
    }

    /// Removes every namespace named `<prefix>-…` and every pin directory `<prefix>` or
    /// `<prefix>-…` under the default pin root: a lab kept, or left by a process that died. Returns
    /// what was removed.
    pub fn remove_by_prefix(prefix: &str) -> Result<Leftovers, LabError> {
        Self::remove_by_prefix_under(prefix, Path::new(DEFAULT_PIN_ROOT))
    }

    /// [`Lab::remove_by_prefix`] for labs pinned under `pin_root`.
    pub fn remove_by_prefix_under(prefix: &str, pin_root: &Path) -> Result<Leftovers, LabError> {
        validate_prefix(prefix)?;
        let found = find(prefix, pin_root)?;
        let mut failures = Vec::new();
        for name in &found.namespaces {
            if let Err(err) = delete_namespace(name) {
                failures.push(err.to_string());
            }
        }
        for dir in &found.pin_dirs {
            if let Err(err) = remove_pins(dir) {
                failures.push(err.to_string());
            }
        }
        if failures.is_empty() {
            Ok(found)
        } else {
            Err(LabError::Cleanup {
                prefix: prefix.to_owned(),
                failures,
            })
        }
    }

    /// What exists of labs whose prefix is `prefix` or begins with `<prefix>-`.
    pub fn find(prefix: &str, pin_root: &Path) -> Result<Leftovers, LabError> {
        validate_prefix(prefix)?;
        find(prefix, pin_root)
    }

    fn teardown(&mut self) -> Result<(), LabError> {
        let mut failures = Vec::new();
        // Endpoints first: their veths go with their namespaces, before the hosts'.
        let namespaces = self
            .endpoints
            .drain(..)
            .map(|e| e.ns)
            .chain(self.hosts.drain(..).map(|h| h.ns))
            .chain(self.switch.take());
        for ns in namespaces {
            if let Err(err) = ns.delete() {
                failures.push(err.to_string());
            }
        }
        // The pinned links outlive their interfaces until unpinned.
        if let Err(err) = remove_pins(&self.pin_dir) {
            failures.push(err.to_string());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(LabError::Cleanup {
                prefix: self.prefix.clone(),
                failures,
            })
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        self.kept = true;
        if let Err(err) = self.teardown() {
            tracing::warn!(%err, "cannot remove the whole lab");
        }
    }
}

fn belongs(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

fn find(prefix: &str, pin_root: &Path) -> Result<Leftovers, LabError> {
    let namespaces = list_namespaces()?
        .into_iter()
        .filter(|name| belongs(name, prefix))
        .collect();
    let mut pin_dirs: Vec<PathBuf> = match fs::read_dir(pin_root) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| belongs(&e.file_name().to_string_lossy(), prefix))
            .map(|e| e.path())
            .collect(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(LabError::PinDir {
                path: pin_root.to_owned(),
                source,
            });
        }
    };
    pin_dirs.sort();
    Ok(Leftovers {
        namespaces,
        pin_dirs,
    })
}

/// Removes a pin directory and everything pinned under it (unpinning a link whose interface is
/// gone frees it; unpinning one still attached detaches it).
fn remove_pins(dir: &Path) -> Result<(), LabError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LabError::PinDir {
            path: dir.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::belongs;

    #[test]
    fn a_prefix_owns_its_names_and_its_sub_prefixes_only() {
        assert!(belongs("mzdemo-hostA", "mzdemo"));
        assert!(belongs("mzdemo", "mzdemo"));
        assert!(belongs("mzt-12-0-switch", "mzt-12"));
        assert!(!belongs("mzt-123-0-switch", "mzt-12"));
        assert!(!belongs("mzdemo2-hostA", "mzdemo"));
        assert!(!belongs("other", "mzdemo"));
    }
}
