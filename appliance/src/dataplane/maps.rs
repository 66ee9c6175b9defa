//! Typed access to the pinned data-plane maps: what the rest of the appliance writes the
//! configuration through and reads the counters from.

use std::net::Ipv4Addr;

use aya::maps::{
    Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues,
    lpm_trie::{Key, LpmTrie},
};
use mizar_ebpf::{abi, ip_be, ip_from_be, maps as names};

use super::{
    DataplaneError, PinLayout,
    counters::{CounterValue, Counters},
};

type MacAddr = [u8; 6];

/// This host, as the data plane needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostConfig {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// MTU of the underlay interface: larger encapsulated frames are dropped and counted.
    pub underlay_mtu: u16,
    pub underlay_ifindex: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VpcEntry {
    /// This host is one of the VPC's dividers (an unknown network is then dropped here).
    pub this_host_divides: bool,
    pub dividers: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEntry {
    pub this_host_bounces: bool,
    pub gateway: Ipv4Addr,
    pub bouncers: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointKind {
    #[default]
    Simple,
    Scaled,
    Host,
    Function,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEntry {
    pub mac: MacAddr,
    pub kind: EndpointKind,
    pub bypass_decap: bool,
    /// The host the endpoint lives on.
    pub host: Ipv4Addr,
    /// The host-side veth when the endpoint lives on this host.
    pub local_ifindex: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// The pinned maps of one instance, opened by path (no programs needed).
pub struct DataplaneMaps {
    config: Array<MapData, abi::mz_host_config>,
    hosts: HashMap<MapData, u32, abi::mz_host>,
    host_filter: Array<MapData, u32>,
    vpcs: HashMap<MapData, u32, abi::mz_vpc>,
    networks: LpmTrie<MapData, [u32; 2], abi::mz_network>,
    endpoints: HashMap<MapData, abi::mz_endpoint_key, abi::mz_endpoint>,
    learned: HashMap<MapData, abi::mz_endpoint_key, abi::mz_learned_host>,
    endpoint_stats: PerCpuArray<MapData, abi::mz_endpoint_stats>,
    local_ifaces: HashMap<MapData, u32, abi::mz_local_iface>,
    counters: PerCpuArray<MapData, abi::mz_counter_value>,
}

fn open<T>(pins: &PinLayout, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let path = pins.map(name);
    let wrap = |source| DataplaneError::OpenMap {
        map: name,
        path: path.clone(),
        source: Box::new(source),
    };
    let data = MapData::from_pin(&path).map_err(wrap)?;
    let map = Map::from_map_data(data).map_err(wrap)?;
    T::try_from(map).map_err(wrap)
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

/// Lookups report a missing key as KeyNotFound; deletes as ENOENT from the syscall.
fn is_missing(err: &aya::maps::MapError) -> bool {
    match err {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn endpoint_key(vni: u32, ip: Ipv4Addr) -> abi::mz_endpoint_key {
    abi::mz_endpoint_key {
        vni,
        ip_be: ip_be(ip),
    }
}

fn network_key(vni: u32, prefix: Ipv4Addr, len: u8) -> Key<[u32; 2]> {
    let masked = u32::from(prefix) & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    Key::new(
        32 + u32::from(len),
        [vni.to_be(), ip_be(Ipv4Addr::from(masked))],
    )
}

/// The first slot of an address's window in mz_host_filter (`host_is_known` in pipeline.h).
fn host_filter_base(ip: Ipv4Addr) -> u32 {
    ip_be(ip).wrapping_mul(abi::MZ_HOST_SLOT_MULTIPLIER) >> (32 - abi::MZ_HOST_FILTER_BITS)
}

fn host_filter_window(ip: Ipv4Addr) -> impl Iterator<Item = u32> {
    let base = host_filter_base(ip);
    (0..abi::MZ_HOST_FILTER_WINDOW).map(move |i| (base + i) & (abi::MZ_HOST_FILTER_SLOTS - 1))
}

fn check_count<const N: usize>(len: usize, what: &str) -> Result<(), DataplaneError> {
    if len > N {
        return Err(DataplaneError::Invalid(format!(
            "at most {N} {what} are supported, {len} given"
        )));
    }
    Ok(())
}

fn bounded<const N: usize, T: Default + Copy>(
    list: &[T],
    what: &str,
) -> Result<([T; N], u32), DataplaneError> {
    check_count::<N>(list.len(), what)?;
    let mut out = [T::default(); N];
    out[..list.len()].copy_from_slice(list);
    Ok((out, list.len() as u32))
}

impl DataplaneMaps {
    pub fn open(pins: &PinLayout) -> Result<Self, DataplaneError> {
        Ok(Self {
            config: open(pins, names::CONFIG)?,
            hosts: open(pins, names::HOSTS)?,
            host_filter: open(pins, names::HOST_FILTER)?,
            vpcs: open(pins, names::VPCS)?,
            networks: open(pins, names::NETWORKS)?,
            endpoints: open(pins, names::ENDPOINTS)?,
            learned: open(pins, names::LEARNED)?,
            endpoint_stats: open(pins, names::ENDPOINT_STATS)?,
            local_ifaces: open(pins, names::LOCAL_IFACES)?,
            counters: open(pins, names::COUNTERS)?,
        })
    }

    pub fn set_host_config(&mut self, host: &HostConfig) -> Result<(), DataplaneError> {
        let value = abi::mz_host_config {
            host_ip_be: ip_be(host.ip),
            host_mac: host.mac,
            underlay_mtu: host.underlay_mtu,
            underlay_ifindex: host.underlay_ifindex,
            flags: abi::MZ_HOST_CONFIGURED,
        };
        self.config.set(0, value, 0).map_err(map_err(names::CONFIG))
    }

    pub fn host_config(&self) -> Result<Option<HostConfig>, DataplaneError> {
        let raw = self.config.get(&0, 0).map_err(map_err(names::CONFIG))?;
        Ok(
            (raw.flags & abi::MZ_HOST_CONFIGURED != 0).then(|| HostConfig {
                ip: ip_from_be(raw.host_ip_be),
                mac: raw.host_mac,
                underlay_mtu: raw.underlay_mtu,
                underlay_ifindex: raw.underlay_ifindex,
            }),
        )
    }

    /// A host on the underlay: tunnel packets are accepted from it and sent to it at `mac`.
    /// Entries that forward to it are updated when its MAC changes.
    pub fn set_host(&mut self, ip: Ipv4Addr, mac: MacAddr) -> Result<(), DataplaneError> {
        if ip.is_unspecified() {
            return Err(DataplaneError::Invalid(
                "0.0.0.0 is not a host address".to_owned(),
            ));
        }
        let previous = self.hosts.get(&ip_be(ip), 0).ok();
        self.add_to_host_filter(ip)?;
        let value = abi::mz_host { mac, reserved: 0 };
        self.hosts
            .insert(ip_be(ip), value, 0)
            .map_err(map_err(names::HOSTS))?;
        if previous.is_some_and(|old| old.mac != mac) {
            self.refresh_next_hops(ip, mac)?;
        }
        Ok(())
    }

    /// Forgets a host. Refused while an endpoint, network or VPC still forwards to it.
    pub fn remove_host(&mut self, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        if let Some(user) = self.host_user(ip)? {
            return Err(DataplaneError::Invalid(format!(
                "host {ip} is still used by {user}; remove or change that first"
            )));
        }
        for slot in host_filter_window(ip) {
            if self
                .host_filter
                .get(&slot, 0)
                .map_err(map_err(names::HOST_FILTER))?
                == ip_be(ip)
            {
                self.host_filter
                    .set(slot, 0, 0)
                    .map_err(map_err(names::HOST_FILTER))?;
            }
        }
        // Nothing learned may keep pointing at it.
        let learned: Vec<_> = self
            .learned
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, host)| host.host_ip_be == ip_be(ip))
            .map(|(key, _)| key)
            .collect();
        for key in learned {
            ignore_missing(self.learned.remove(&key), names::LEARNED)?;
        }
        ignore_missing(self.hosts.remove(&ip_be(ip)), names::HOSTS)
    }

    fn add_to_host_filter(&mut self, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        let mut free = None;
        for slot in host_filter_window(ip) {
            match self
                .host_filter
                .get(&slot, 0)
                .map_err(map_err(names::HOST_FILTER))?
            {
                raw if raw == ip_be(ip) => return Ok(()),
                0 => free = free.or(Some(slot)),
                _ => {}
            }
        }
        let slot = free.ok_or_else(|| {
            DataplaneError::Invalid(format!(
                "no room for host {ip} in the underlay host filter ({} slots near it are taken by \
                 other hosts); remove unused hosts",
                abi::MZ_HOST_FILTER_WINDOW
            ))
        })?;
        self.host_filter
            .set(slot, ip_be(ip), 0)
            .map_err(map_err(names::HOST_FILTER))
    }

    /// The underlay MAC of a host to forward to: a known host, or this host itself.
    fn next_hop(&self, ip: Ipv4Addr) -> Result<abi::mz_next_hop, DataplaneError> {
        let mac = match self.hosts.get(&ip_be(ip), 0) {
            Ok(host) => host.mac,
            Err(err) if is_missing(&err) => match self.host_config()? {
                Some(me) if me.ip == ip => me.mac,
                _ => {
                    return Err(DataplaneError::Invalid(format!(
                        "host {ip} is not known: add it (with its underlay MAC) before anything \
                         that forwards to it"
                    )));
                }
            },
            Err(err) => return Err(map_err(names::HOSTS)(err)),
        };
        Ok(abi::mz_next_hop {
            ip_be: ip_be(ip),
            mac,
            reserved: 0,
        })
    }

    fn next_hops<const N: usize>(
        &self,
        hosts: &[Ipv4Addr],
        what: &str,
    ) -> Result<([abi::mz_next_hop; N], u32), DataplaneError> {
        check_count::<N>(hosts.len(), what)?;
        let hops = hosts
            .iter()
            .map(|ip| self.next_hop(*ip))
            .collect::<Result<Vec<_>, _>>()?;
        bounded(&hops, what)
    }

    /// What still forwards to `ip`, if anything (for refusing its removal).
    fn host_user(&self, ip: Ipv4Addr) -> Result<Option<String>, DataplaneError> {
        let raw = ip_be(ip);
        for entry in self.endpoints.iter() {
            let (key, ep) = entry.map_err(map_err(names::ENDPOINTS))?;
            if ep.host_ip_be == raw && ep.flags & abi::MZ_EP_LOCAL as u8 == 0 {
                return Ok(Some(format!(
                    "endpoint {} of VNI {}",
                    ip_from_be(key.ip_be),
                    key.vni
                )));
            }
        }
        for entry in self.networks.iter() {
            let (key, net) = entry.map_err(map_err(names::NETWORKS))?;
            if net.bouncers[..net.bouncer_count as usize]
                .iter()
                .any(|h| h.ip_be == raw)
            {
                let [vni_be, prefix] = key.data();
                return Ok(Some(format!(
                    "network {}/{} of VNI {} (as a bouncer)",
                    ip_from_be(prefix),
                    key.prefix_len() - 32,
                    u32::from_be(vni_be)
                )));
            }
        }
        for entry in self.vpcs.iter() {
            let (vni, vpc) = entry.map_err(map_err(names::VPCS))?;
            if vpc.dividers[..vpc.divider_count as usize]
                .iter()
                .any(|h| h.ip_be == raw)
            {
                return Ok(Some(format!("VPC {vni} (as a divider)")));
            }
        }
        Ok(None)
    }

    /// Rewrites the MAC of `ip` wherever an entry forwards to it.
    fn refresh_next_hops(&mut self, ip: Ipv4Addr, mac: MacAddr) -> Result<(), DataplaneError> {
        let raw = ip_be(ip);
        let endpoints: Vec<_> = self
            .endpoints
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, ep)| ep.host_ip_be == raw && ep.host_mac != mac)
            .collect();
        for (key, mut ep) in endpoints {
            ep.host_mac = mac;
            self.endpoints
                .insert(key, ep, 0)
                .map_err(map_err(names::ENDPOINTS))?;
        }
        let retarget = |hops: &mut [abi::mz_next_hop]| {
            let mut changed = false;
            for hop in hops.iter_mut().filter(|h| h.ip_be == raw && h.mac != mac) {
                hop.mac = mac;
                changed = true;
            }
            changed
        };
        let networks: Vec<_> = self.networks.iter().filter_map(Result::ok).collect();
        for (key, mut net) in networks {
            if retarget(&mut net.bouncers) {
                self.networks
                    .insert(&key, net, 0)
                    .map_err(map_err(names::NETWORKS))?;
            }
        }
        let vpcs: Vec<_> = self.vpcs.iter().filter_map(Result::ok).collect();
        for (vni, mut vpc) in vpcs {
            if retarget(&mut vpc.dividers) {
                self.vpcs
                    .insert(vni, vpc, 0)
                    .map_err(map_err(names::VPCS))?;
            }
        }
        Ok(())
    }

    pub fn set_vpc(&mut self, vni: u32, vpc: &VpcEntry) -> Result<(), DataplaneError> {
        check_vni(vni)?;
        let (dividers, divider_count) = self.next_hops(&vpc.dividers, "dividers per VPC")?;
        let value = abi::mz_vpc {
            flags: if vpc.this_host_divides {
                abi::MZ_VPC_THIS_HOST_DIVIDES
            } else {
                0
            },
            divider_count,
            dividers,
        };
        self.vpcs
            .insert(vni, value, 0)
            .map_err(map_err(names::VPCS))
    }

    pub fn remove_vpc(&mut self, vni: u32) -> Result<(), DataplaneError> {
        ignore_missing(self.vpcs.remove(&vni), names::VPCS)
    }

    pub fn set_network(
        &mut self,
        vni: u32,
        prefix: Ipv4Addr,
        len: u8,
        net: &NetworkEntry,
    ) -> Result<(), DataplaneError> {
        check_vni(vni)?;
        if len > 32 {
            return Err(DataplaneError::Invalid(format!(
                "prefix length /{len} is not a valid IPv4 prefix length (0 to 32)"
            )));
        }
        let (bouncers, bouncer_count) = self.next_hops(&net.bouncers, "bouncers per network")?;
        let value = abi::mz_network {
            flags: if net.this_host_bounces {
                abi::MZ_NET_THIS_HOST_BOUNCES
            } else {
                0
            },
            bouncer_count,
            gateway_be: ip_be(net.gateway),
            bouncers,
        };
        self.networks
            .insert(&network_key(vni, prefix, len), value, 0)
            .map_err(map_err(names::NETWORKS))
    }

    pub fn remove_network(
        &mut self,
        vni: u32,
        prefix: Ipv4Addr,
        len: u8,
    ) -> Result<(), DataplaneError> {
        ignore_missing(
            self.networks.remove(&network_key(vni, prefix, len)),
            names::NETWORKS,
        )
    }

    /// Adds or replaces an endpoint. A local one (with `local_ifindex`) is registered for the
    /// egress program on its veth and gets a counter slot, zeroed when first given; a remote
    /// one needs its host known (for the host's MAC).
    pub fn set_endpoint(
        &mut self,
        vni: u32,
        ip: Ipv4Addr,
        ep: &EndpointEntry,
    ) -> Result<(), DataplaneError> {
        check_vni(vni)?;
        let key = endpoint_key(vni, ip);
        let existing = self.endpoint(vni, ip)?;
        let was_local = existing.filter(|old| old.flags & abi::MZ_EP_LOCAL as u8 != 0);

        let (flags, ifindex, host_mac, stats_slot) = match ep.local_ifindex {
            Some(ifindex) => {
                let slot = match was_local {
                    Some(old) => old.stats_slot,
                    None => self.free_stats_slot()?,
                };
                (abi::MZ_EP_LOCAL as u8, ifindex, [0; 6], slot)
            }
            None => (0, 0, self.next_hop(ep.host)?.mac, 0),
        };
        let value = abi::mz_endpoint {
            host_ip_be: ip_be(ep.host),
            ifindex,
            mac: ep.mac,
            type_: match ep.kind {
                EndpointKind::Simple => abi::MZ_EP_SIMPLE,
                EndpointKind::Scaled => abi::MZ_EP_SCALED,
                EndpointKind::Host => abi::MZ_EP_HOST,
                EndpointKind::Function => abi::MZ_EP_FUNCTION,
            } as u8,
            flags: flags
                | if ep.bypass_decap {
                    abi::MZ_EP_BYPASS_DECAP as u8
                } else {
                    0
                },
            host_mac,
            stats_slot,
        };

        // A veth the endpoint no longer uses must stop speaking for it.
        if let Some(old) = was_local
            && ep.local_ifindex != Some(old.ifindex)
        {
            ignore_missing(self.local_ifaces.remove(&old.ifindex), names::LOCAL_IFACES)?;
        }
        if let Some(ifindex) = ep.local_ifindex {
            if was_local.is_none() {
                self.endpoint_stats
                    .set(u32::from(stats_slot), per_cpu_zeros()?, 0)
                    .map_err(map_err(names::ENDPOINT_STATS))?;
            }
            let iface = abi::mz_local_iface {
                endpoint: key,
                mac: ep.mac,
                stats_slot,
            };
            self.local_ifaces
                .insert(ifindex, iface, 0)
                .map_err(map_err(names::LOCAL_IFACES))?;
        }
        self.endpoints
            .insert(key, value, 0)
            .map_err(map_err(names::ENDPOINTS))
    }

    /// The lowest counter slot no local endpoint holds.
    fn free_stats_slot(&self) -> Result<u16, DataplaneError> {
        let mut used = vec![false; abi::MZ_MAX_LOCAL_IFACES as usize];
        for entry in self.local_ifaces.iter() {
            let (_, iface) = entry.map_err(map_err(names::LOCAL_IFACES))?;
            if let Some(u) = used.get_mut(usize::from(iface.stats_slot)) {
                *u = true;
            }
        }
        used.iter()
            .position(|u| !u)
            .map(|slot| slot as u16)
            .ok_or_else(|| {
                DataplaneError::Invalid(format!(
                    "this host already has {} endpoints, the most it can serve",
                    abi::MZ_MAX_LOCAL_IFACES
                ))
            })
    }

    /// Removes an endpoint and its veth registration (its counter slot becomes free).
    pub fn remove_endpoint(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        if let Some(ep) = self.endpoint(vni, ip)?
            && ep.flags & abi::MZ_EP_LOCAL as u8 != 0
        {
            ignore_missing(self.local_ifaces.remove(&ep.ifindex), names::LOCAL_IFACES)?;
        }
        ignore_missing(
            self.endpoints.remove(&endpoint_key(vni, ip)),
            names::ENDPOINTS,
        )
    }

    pub fn endpoint(
        &self,
        vni: u32,
        ip: Ipv4Addr,
    ) -> Result<Option<abi::mz_endpoint>, DataplaneError> {
        match self.endpoints.get(&endpoint_key(vni, ip), 0) {
            Ok(ep) => Ok(Some(ep)),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(map_err(names::ENDPOINTS)(err)),
        }
    }

    /// Counters of an endpoint hosted here, summed over CPUs; None for any other endpoint.
    pub fn endpoint_stats(
        &self,
        vni: u32,
        ip: Ipv4Addr,
    ) -> Result<Option<EndpointStats>, DataplaneError> {
        let Some(ep) = self
            .endpoint(vni, ip)?
            .filter(|ep| ep.flags & abi::MZ_EP_LOCAL as u8 != 0)
        else {
            return Ok(None);
        };
        let per_cpu = self
            .endpoint_stats
            .get(&u32::from(ep.stats_slot), 0)
            .map_err(map_err(names::ENDPOINT_STATS))?;
        Ok(Some(per_cpu.iter().fold(
            EndpointStats::default(),
            |sum, s| EndpointStats {
                rx_packets: sum.rx_packets + s.rx_packets,
                rx_bytes: sum.rx_bytes + s.rx_bytes,
                tx_packets: sum.tx_packets + s.tx_packets,
                tx_bytes: sum.tx_bytes + s.tx_bytes,
            },
        )))
    }

    /// Where the data plane learned (from a source-host option) that an endpoint lives.
    pub fn learned_host(&self, vni: u32, ip: Ipv4Addr) -> Result<Option<Ipv4Addr>, DataplaneError> {
        match self.learned.get(&endpoint_key(vni, ip), 0) {
            Ok(v) => Ok(Some(ip_from_be(v.host_ip_be))),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(map_err(names::LEARNED)(err)),
        }
    }

    /// Every counter slot, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, DataplaneError> {
        let mut slots = Vec::with_capacity(abi::MZ_COUNTER_SLOTS as usize);
        for slot in 0..abi::MZ_COUNTER_SLOTS {
            let per_cpu = self
                .counters
                .get(&slot, 0)
                .map_err(map_err(names::COUNTERS))?;
            slots.push(
                per_cpu
                    .iter()
                    .fold(CounterValue::default(), |sum, v| CounterValue {
                        packets: sum.packets + v.packets,
                        bytes: sum.bytes + v.bytes,
                    }),
            );
        }
        Ok(Counters::from_slots(slots))
    }

    /// Zeroes every counter slot (tests and benchmarks start from a clean slate).
    pub fn reset_counters(&mut self) -> Result<(), DataplaneError> {
        for slot in 0..abi::MZ_COUNTER_SLOTS {
            let zeros = per_cpu_zeros::<abi::mz_counter_value>()?;
            self.counters
                .set(slot, zeros, 0)
                .map_err(map_err(names::COUNTERS))?;
        }
        Ok(())
    }
}

fn check_vni(vni: u32) -> Result<(), DataplaneError> {
    if vni == 0 || vni >= 1 << 24 {
        return Err(DataplaneError::Invalid(format!(
            "VNI {vni} is out of range: use 1 to 16777215"
        )));
    }
    Ok(())
}

fn ignore_missing(
    result: Result<(), aya::maps::MapError>,
    map: &'static str,
) -> Result<(), DataplaneError> {
    match result {
        Err(err) if !is_missing(&err) => Err(map_err(map)(err)),
        _ => Ok(()),
    }
}

fn per_cpu_zeros<T: aya::Pod + Default + Clone>() -> Result<PerCpuValues<T>, DataplaneError> {
    let cpus = aya::util::nr_cpus().map_err(|(what, err)| {
        DataplaneError::Invalid(format!("cannot count CPUs ({what}): {err}"))
    })?;
    PerCpuValues::try_from(vec![T::default(); cpus])
        .map_err(|err| DataplaneError::Invalid(format!("per-CPU values: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_key_masks_host_bits_and_leads_with_the_vni() {
        let key = network_key(100, Ipv4Addr::new(10, 0, 3, 77), 16);
        assert_eq!(key.prefix_len(), 48);
        assert_eq!(
            key.data(),
            [100u32.to_be(), ip_be(Ipv4Addr::new(10, 0, 0, 0))]
        );
        let all = network_key(7, Ipv4Addr::new(1, 2, 3, 4), 0);
        assert_eq!(all.data()[1], 0, "/0 keeps no address bits");
        let host = network_key(7, Ipv4Addr::new(1, 2, 3, 4), 32);
        assert_eq!(host.data()[1], ip_be(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn host_filter_window_wraps_around_the_table() {
        // The same arithmetic as host_is_known in pipeline.h: a window of consecutive slots.
        let ip = Ipv4Addr::new(192, 0, 2, 1);
        let window: Vec<u32> = host_filter_window(ip).collect();
        assert_eq!(window.len(), abi::MZ_HOST_FILTER_WINDOW as usize);
        assert!(window.iter().all(|s| *s < abi::MZ_HOST_FILTER_SLOTS));
        for pair in window.windows(2) {
            assert_eq!(pair[1], (pair[0] + 1) % abi::MZ_HOST_FILTER_SLOTS);
        }
    }

    #[test]
    fn vni_range_is_enforced_with_a_useful_message() {
        assert!(check_vni(1).is_ok());
        assert!(check_vni((1 << 24) - 1).is_ok());
        for bad in [0, 1 << 24] {
            let err = check_vni(bad).unwrap_err().to_string();
            assert!(err.contains("1 to 16777215"), "{err}");
        }
    }

    #[test]
    fn address_lists_are_bounded() {
        let list = vec![7u32; 3];
        let (raw, count) = bounded::<4, u32>(&list, "bouncers").unwrap();
        assert_eq!(count, 3);
        assert_eq!(raw, [7, 7, 7, 0]);
        let err = bounded::<2, u32>(&list, "bouncers per network")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 2 bouncers per network"), "{err}");
    }
}
