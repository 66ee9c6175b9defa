//! Typed access to the pinned data-plane maps: whole-map reads and single-entry writes for
//! reconcile, and the counters' readers. There is one write path: configuration entries are
//! written only by reconcile (which resolves next hops, counter slots and veth registrations
//! from a desired state and orders the writes), so nothing outside `reconcile.rs` encodes or
//! orders a configuration write; the single-object changes tests and the benchmark use
//! (`set_endpoint` and the like) are a layer over reconcile, in `reconcile.rs`.

use std::{collections::BTreeMap, net::Ipv4Addr};

use aya::maps::{
    Array, HashMap, IterableMap, Map, MapData, PerCpuArray, PerCpuValues,
    lpm_trie::{Key, LpmTrie},
};
use mizar_ebpf::{abi, flow_hash, ip_be, ip_from_be, maps as names};

use super::{
    DataplaneError, PinLayout,
    counters::{CounterValue, Counters},
};

pub use mizar_db::{Ipv4Net, MacAddr};

/// A network as the maps key it: VNI and prefix (no host bits: reconcile refuses them).
pub type NetworkKey = (u32, Ipv4Net);

/// An endpoint as the maps key it: VNI and address.
pub type EndpointKey = (u32, Ipv4Addr);

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
    /// The other hosts with a role in the VPC, besides its dividers (which are members by
    /// being dividers): tunnel packets of the VPC are accepted only from members.
    pub members: BTreeMap<Ipv4Addr, MemberRoles>,
}

/// What a host is to a VPC, besides divider (see `mz_vpc_members` in the ABI header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberRoles {
    /// It hosts endpoints of the VPC: it may send for them, and be learned as their home.
    pub endpoints: bool,
    /// It bounces one of the VPC's networks: it forwards for other hosts.
    pub bouncer: bool,
}

impl MemberRoles {
    pub const ENDPOINTS: Self = Self {
        endpoints: true,
        bouncer: false,
    };
    pub const BOUNCER: Self = Self {
        endpoints: false,
        bouncer: true,
    };

    pub fn is_empty(&self) -> bool {
        !(self.endpoints || self.bouncer)
    }

    /// Both sets of roles.
    pub fn union(self, other: Self) -> Self {
        Self {
            endpoints: self.endpoints || other.endpoints,
            bouncer: self.bouncer || other.bouncer,
        }
    }

    fn bits(&self) -> u32 {
        (if self.endpoints {
            abi::MZ_MEMBER_ENDPOINTS
        } else {
            0
        }) | if self.bouncer {
            abi::MZ_MEMBER_BOUNCER
        } else {
            0
        }
    }

    fn from_bits(bits: u32) -> Self {
        Self {
            endpoints: bits & abi::MZ_MEMBER_ENDPOINTS != 0,
            bouncer: bits & abi::MZ_MEMBER_BOUNCER != 0,
        }
    }
}

/// A (VNI, host) pair of mz_vpc_members.
pub type MemberKey = (u32, Ipv4Addr);

/// The mz_vpc_members entries a VPC implies: its members, and its dividers with the divider
/// role added.
pub(super) fn encode_members(vni: u32, vpc: &VpcEntry) -> BTreeMap<MemberKey, abi::mz_member> {
    let mut roles: BTreeMap<Ipv4Addr, u32> = vpc
        .members
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(ip, r)| (*ip, r.bits()))
        .collect();
    for divider in &vpc.dividers {
        *roles.entry(*divider).or_default() |= abi::MZ_MEMBER_DIVIDER;
    }
    roles
        .into_iter()
        .map(|(ip, roles)| {
            let key = abi::mz_member_key {
                vni,
                host_ip_be: ip_be(ip),
            };
            ((vni, ip), abi::mz_member { key, roles })
        })
        .collect()
}

/// The members of a VPC as [`VpcEntry::members`] holds them (the divider role is implied by
/// the divider list, so it is left out).
pub(super) fn decode_members<'a>(
    entries: impl Iterator<Item = &'a abi::mz_member>,
) -> BTreeMap<Ipv4Addr, MemberRoles> {
    entries
        .map(|m| {
            (
                ip_from_be(m.key.host_ip_be),
                MemberRoles::from_bits(m.roles),
            )
        })
        .filter(|(_, r)| !r.is_empty())
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEntry {
    pub this_host_bounces: bool,
    pub gateway: Ipv4Addr,
    pub bouncers: Vec<Ipv4Addr>,
}

/// The store's endpoint kinds are the data plane's: one enum (encoded to the ABI's `type_`).
pub use mizar_db::EndpointKind;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
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
    vpc_members: HashMap<MapData, abi::mz_member_key, abi::mz_member>,
    networks: LpmTrie<MapData, [u32; 2], abi::mz_network>,
    endpoints: HashMap<MapData, abi::mz_endpoint_key, abi::mz_endpoint>,
    learned: HashMap<MapData, abi::mz_endpoint_key, abi::mz_learned_host>,
    learned_cache: PerCpuArray<MapData, abi::mz_learned_cache_entry>,
    endpoint_stats: PerCpuArray<MapData, abi::mz_endpoint_stats>,
    local_ifaces: HashMap<MapData, u32, abi::mz_local_iface>,
    counters: PerCpuArray<MapData, abi::mz_counter_value>,
}

pub(crate) fn open<T>(pins: &PinLayout, name: &'static str) -> Result<T, DataplaneError>
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

fn batch_err(map: &'static str) -> impl Fn(std::io::Error) -> DataplaneError {
    move |io_error| DataplaneError::Map {
        map,
        source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_*_batch",
            io_error,
        })),
    }
}

/// Every entry of a hash map: in batches, or one by one where the kernel cannot batch.
fn read_all<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
) -> Result<Vec<(K, V)>, DataplaneError> {
    match batch::lookup_all(map.map()) {
        Some(entries) => entries.map_err(batch_err(name)),
        None => map
            .iter()
            .map(|entry| entry.map_err(map_err(name)))
            .collect(),
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

pub(super) fn endpoint_key(vni: u32, ip: Ipv4Addr) -> abi::mz_endpoint_key {
    abi::mz_endpoint_key {
        vni,
        ip_be: ip_be(ip),
    }
}

fn network_key(vni: u32, prefix: Ipv4Net) -> Key<[u32; 2]> {
    Key::new(
        32 + u32::from(prefix.prefix_len()),
        [vni.to_be(), ip_be(prefix.network())],
    )
}

/// The first slot of an address's window in mz_host_filter (`host_is_known` in pipeline.h).
fn host_filter_base(ip: Ipv4Addr) -> u32 {
    ip_be(ip).wrapping_mul(abi::MZ_HOST_SLOT_MULTIPLIER) >> (32 - abi::MZ_HOST_FILTER_BITS)
}

pub(super) fn host_filter_window(ip: Ipv4Addr) -> impl Iterator<Item = u32> {
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

/// BPF_MAP_{LOOKUP,UPDATE,DELETE}_BATCH (Linux 5.6+), which aya 0.14 does not wrap: many
/// entries per syscall. Reading 100,000 endpoints one at a time costs 200,000 syscalls
/// (get_next_key, then lookup), about 0.2 s; a batch read, a few dozen. Each returns None
/// where the kernel or the map type does not support the command, and the caller falls back
/// to one syscall per entry.
mod batch {
    use std::{
        io,
        mem::size_of,
        os::fd::{AsFd, AsRawFd},
    };

    use aya::{Pod, maps::MapData};

    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
    /// Entries per lookup call; more than any hash bucket holds, so ENOSPC cannot happen.
    const CHUNK: usize = 8192;

    /// The `batch` member of `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }

    /// Runs one batch command; returns the entries it processed and its result.
    fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> (usize, io::Result<()>) {
        // SAFETY: `attr` is a valid bpf_attr prefix (the kernel zero-fills the rest) whose
        // pointers address buffers sized for `count` keys and values (and batch tokens of 8
        // bytes, at least a hash bucket index or an array key), alive for the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let result = if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        (attr.count as usize, result)
    }

    /// The kernel's own ENOTSUPP, which BPF_DO_BATCH returns for a map type without the
    /// command; EINVAL from kernels that do not know the command at all.
    const KERNEL_ENOTSUPP: i32 = 524;

    fn unsupported(err: &io::Error) -> bool {
        matches!(
            err.raw_os_error(),
            Some(libc::EINVAL | libc::EOPNOTSUPP | KERNEL_ENOTSUPP)
        )
    }

    fn fd(map: &MapData) -> u32 {
        map.fd().as_fd().as_raw_fd() as u32
    }

    /// Every entry of a hash or array map.
    pub(super) fn lookup_all<K: Pod, V: Pod>(map: &MapData) -> Option<io::Result<Vec<(K, V)>>> {
        let entries = lookup_raw(map, size_of::<K>(), size_of::<V>())?;
        Some(entries.map(|entries| {
            entries
                .iter()
                // SAFETY: each key and value holds the map's sizes, K's and V's (aya checked
                // them when the map was opened); Pod types take any bytes.
                .map(|(k, v)| unsafe {
                    (
                        k.as_ptr().cast::<K>().read_unaligned(),
                        v.as_ptr().cast::<V>().read_unaligned(),
                    )
                })
                .collect()
        }))
    }

    /// Every entry of a per-CPU array or hash, each value summed over `cpus` CPUs by `sum`.
    pub(super) fn lookup_all_per_cpu<K: Pod, V: Pod>(
        map: &MapData,
        cpus: usize,
        sum: impl Fn(&[V]) -> V,
    ) -> Option<io::Result<Vec<(K, V)>>> {
        // The kernel lays per-CPU values out at 8-byte strides.
        let stride = size_of::<V>().next_multiple_of(8);
        let entries = lookup_raw(map, size_of::<K>(), stride * cpus)?;
        Some(entries.map(|entries| {
            entries
                .iter()
                .map(|(k, v)| {
                    let per_cpu: Vec<V> = (0..cpus)
                        // SAFETY: as in lookup_all, one V at each CPU's stride.
                        .map(|cpu| unsafe {
                            v.as_ptr().add(cpu * stride).cast::<V>().read_unaligned()
                        })
                        .collect();
                    // SAFETY: as in lookup_all.
                    let key = unsafe { k.as_ptr().cast::<K>().read_unaligned() };
                    (key, sum(&per_cpu))
                })
                .collect()
        }))
    }

    /// Every entry as raw key and value bytes.
    #[expect(
        clippy::type_complexity,
        reason = "pairs of byte strings, used twice just above"
    )]
    fn lookup_raw(
        map: &MapData,
        key_size: usize,
        value_size: usize,
    ) -> Option<io::Result<Vec<(Vec<u8>, Vec<u8>)>>> {
        let mut keys = vec![0u8; CHUNK * key_size];
        let mut values = vec![0u8; CHUNK * value_size];
        let (mut token_in, mut token_out) = (0u64, 0u64);
        let mut out = Vec::new();
        for first in std::iter::once(true).chain(std::iter::repeat(false)) {
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { &raw const token_in as u64 },
                out_batch: &raw mut token_out as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: CHUNK as u32,
                map_fd: fd(map),
                ..BatchAttr::default()
            };
            let (count, result) = call(BPF_MAP_LOOKUP_BATCH, &mut attr);
            let done = match result {
                Ok(()) => false,
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => true,
                Err(err) if first && unsupported(&err) => return None,
                Err(err) => return Some(Err(err)),
            };
            for i in 0..count.min(CHUNK) {
                out.push((
                    keys[i * key_size..(i + 1) * key_size].to_vec(),
                    values[i * value_size..(i + 1) * value_size].to_vec(),
                ));
            }
            if done {
                break;
            }
            token_in = token_out;
        }
        Some(Ok(out))
    }

    /// Writes (BPF_ANY) every entry; on an error, how many were written is unknown to the
    /// caller, which reports the error (reconcile converges when run again).
    pub(super) fn update<K: Pod, V: Pod>(
        map: &MapData,
        entries: &[(K, V)],
    ) -> Option<io::Result<()>> {
        if entries.is_empty() {
            return Some(Ok(()));
        }
        let keys: Vec<K> = entries.iter().map(|(k, _)| *k).collect();
        let values: Vec<V> = entries.iter().map(|(_, v)| *v).collect();
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: entries.len() as u32,
            map_fd: fd(map),
            ..BatchAttr::default()
        };
        match call(BPF_MAP_UPDATE_BATCH, &mut attr) {
            (0, Err(err)) if unsupported(&err) => None,
            (_, result) => Some(result),
        }
    }

    /// Deletes every key; keys already missing are skipped, not errors.
    pub(super) fn delete<K: Pod>(map: &MapData, keys: &[K]) -> Option<io::Result<()>> {
        let mut rest = keys;
        let mut first = true;
        while !rest.is_empty() {
            let mut attr = BatchAttr {
                keys: rest.as_ptr() as u64,
                count: rest.len() as u32,
                map_fd: fd(map),
                ..BatchAttr::default()
            };
            let (count, result) = call(BPF_MAP_DELETE_BATCH, &mut attr);
            match result {
                Ok(()) => return Some(Ok(())),
                // The kernel stops at a missing key: step over it.
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    rest = &rest[(count + 1).min(rest.len())..];
                }
                Err(err) if first && count == 0 && unsupported(&err) => return None,
                Err(err) => return Some(Err(err)),
            }
            first = false;
        }
        Some(Ok(()))
    }
}

/// Next hops with their MACs, as `resolve` gives them; the count is checked first.
fn encode_next_hops<const N: usize>(
    hosts: &[Ipv4Addr],
    what: &str,
    mut resolve: impl FnMut(Ipv4Addr) -> Result<MacAddr, DataplaneError>,
) -> Result<([abi::mz_next_hop; N], u32), DataplaneError> {
    check_count::<N>(hosts.len(), what)?;
    let hops = hosts
        .iter()
        .map(|ip| {
            Ok(abi::mz_next_hop {
                ip_be: ip_be(*ip),
                mac: resolve(*ip)?.0,
                reserved: 0,
            })
        })
        .collect::<Result<Vec<_>, DataplaneError>>()?;
    bounded(&hops, what)
}

fn decode_next_hops(hops: &[abi::mz_next_hop], count: u32) -> Vec<Ipv4Addr> {
    hops.iter()
        .take(count as usize)
        .map(|hop| ip_from_be(hop.ip_be))
        .collect()
}

/// The mz_vpcs value of a VPC; `resolve` gives each divider's underlay MAC.
pub(super) fn encode_vpc(
    vni: u32,
    vpc: &VpcEntry,
    resolve: impl FnMut(Ipv4Addr) -> Result<MacAddr, DataplaneError>,
) -> Result<abi::mz_vpc, DataplaneError> {
    let (dividers, divider_count) = encode_next_hops(&vpc.dividers, "dividers per VPC", resolve)?;
    Ok(abi::mz_vpc {
        vni,
        flags: if vpc.this_host_divides {
            abi::MZ_VPC_THIS_HOST_DIVIDES
        } else {
            0
        },
        divider_count,
        dividers,
    })
}

pub(super) fn decode_vpc(raw: &abi::mz_vpc, members: BTreeMap<Ipv4Addr, MemberRoles>) -> VpcEntry {
    VpcEntry {
        this_host_divides: raw.flags & abi::MZ_VPC_THIS_HOST_DIVIDES != 0,
        dividers: decode_next_hops(&raw.dividers, raw.divider_count),
        members,
    }
}

/// The mz_networks value of a network; `resolve` gives each bouncer's underlay MAC.
pub(super) fn encode_network(
    net: &NetworkEntry,
    resolve: impl FnMut(Ipv4Addr) -> Result<MacAddr, DataplaneError>,
) -> Result<abi::mz_network, DataplaneError> {
    let (bouncers, bouncer_count) =
        encode_next_hops(&net.bouncers, "bouncers per network", resolve)?;
    Ok(abi::mz_network {
        flags: if net.this_host_bounces {
            abi::MZ_NET_THIS_HOST_BOUNCES
        } else {
            0
        },
        bouncer_count,
        gateway_be: ip_be(net.gateway),
        bouncers,
    })
}

pub(super) fn decode_network(raw: &abi::mz_network) -> NetworkEntry {
    NetworkEntry {
        this_host_bounces: raw.flags & abi::MZ_NET_THIS_HOST_BOUNCES != 0,
        gateway: ip_from_be(raw.gateway_be),
        bouncers: decode_next_hops(&raw.bouncers, raw.bouncer_count),
    }
}

/// The mz_endpoints value of an endpoint: `host_mac` is its host's underlay MAC (remote
/// endpoints), `stats_slot` its counter slot (local ones).
pub(super) fn encode_endpoint(
    (vni, ip): EndpointKey,
    ep: &EndpointEntry,
    host_mac: MacAddr,
    stats_slot: u16,
) -> abi::mz_endpoint {
    let local = ep.local_ifindex.is_some();
    abi::mz_endpoint {
        key: endpoint_key(vni, ip),
        host_ip_be: ip_be(ep.host),
        ifindex: ep.local_ifindex.unwrap_or(0),
        mac: ep.mac.0,
        type_: match ep.kind {
            EndpointKind::Simple => abi::MZ_EP_SIMPLE,
            EndpointKind::Scaled => abi::MZ_EP_SCALED,
            EndpointKind::Host => abi::MZ_EP_HOST,
            EndpointKind::Function => abi::MZ_EP_FUNCTION,
        } as u8,
        flags: if local { abi::MZ_EP_LOCAL as u8 } else { 0 }
            | if ep.bypass_decap {
                abi::MZ_EP_BYPASS_DECAP as u8
            } else {
                0
            },
        host_mac: if local { [0; 6] } else { host_mac.0 },
        stats_slot: if local { stats_slot } else { 0 },
    }
}

/// The endpoint an mz_endpoints value describes; None for a type this build does not know.
pub(super) fn decode_endpoint(raw: &abi::mz_endpoint) -> Option<EndpointEntry> {
    let kind = match u32::from(raw.type_) {
        abi::MZ_EP_SIMPLE => EndpointKind::Simple,
        abi::MZ_EP_SCALED => EndpointKind::Scaled,
        abi::MZ_EP_HOST => EndpointKind::Host,
        abi::MZ_EP_FUNCTION => EndpointKind::Function,
        _ => return None,
    };
    Some(EndpointEntry {
        mac: MacAddr(raw.mac),
        kind,
        bypass_decap: raw.flags & abi::MZ_EP_BYPASS_DECAP as u8 != 0,
        host: ip_from_be(raw.host_ip_be),
        local_ifindex: (raw.flags & abi::MZ_EP_LOCAL as u8 != 0).then_some(raw.ifindex),
    })
}

/// The mz_local_ifaces value of a local endpoint's veth.
pub(super) fn local_iface(
    ifindex: u32,
    endpoint: abi::mz_endpoint_key,
    mac: MacAddr,
    stats_slot: u16,
) -> abi::mz_local_iface {
    abi::mz_local_iface {
        ifindex,
        endpoint,
        mac: mac.0,
        stats_slot,
    }
}

impl DataplaneMaps {
    pub fn open(pins: &PinLayout) -> Result<Self, DataplaneError> {
        Ok(Self {
            config: open(pins, names::CONFIG)?,
            hosts: open(pins, names::HOSTS)?,
            host_filter: open(pins, names::HOST_FILTER)?,
            vpcs: open(pins, names::VPCS)?,
            vpc_members: open(pins, names::VPC_MEMBERS)?,
            networks: open(pins, names::NETWORKS)?,
            endpoints: open(pins, names::ENDPOINTS)?,
            learned: open(pins, names::LEARNED)?,
            learned_cache: open(pins, names::LEARNED_CACHE)?,
            endpoint_stats: open(pins, names::ENDPOINT_STATS)?,
            local_ifaces: open(pins, names::LOCAL_IFACES)?,
            counters: open(pins, names::COUNTERS)?,
        })
    }

    /// Writes this host's configuration (None: unconfigured, so transit hands every packet to
    /// the stack and egress drops), and nothing else: the stages' armed bits, which the chains
    /// own (see `chains`), are kept as they are.
    pub(super) fn write_config(&mut self, host: Option<&HostConfig>) -> Result<(), DataplaneError> {
        let current = self.config.get(&0, 0).map_err(map_err(names::CONFIG))?;
        let armed = current.flags & !abi::MZ_HOST_CONFIGURED;
        let mut value =
            host.map_or_else(abi::mz_host_config::default, |host| abi::mz_host_config {
                host_ip_be: ip_be(host.ip),
                host_mac: host.mac.0,
                underlay_mtu: host.underlay_mtu,
                underlay_ifindex: host.underlay_ifindex,
                flags: abi::MZ_HOST_CONFIGURED,
            });
        value.flags |= armed;
        self.config.set(0, value, 0).map_err(map_err(names::CONFIG))
    }

    pub fn host_config(&self) -> Result<Option<HostConfig>, DataplaneError> {
        let raw = self.config.get(&0, 0).map_err(map_err(names::CONFIG))?;
        Ok(
            (raw.flags & abi::MZ_HOST_CONFIGURED != 0).then(|| HostConfig {
                ip: ip_from_be(raw.host_ip_be),
                mac: MacAddr(raw.host_mac),
                underlay_mtu: raw.underlay_mtu,
                underlay_ifindex: raw.underlay_ifindex,
            }),
        )
    }

    // -----------------------------------------------------------------------------------------
    // Whole-map reads and single-map writes, for reconcile (which resolves next hops, counter
    // slots and veth registrations itself, from the desired state, and orders the writes).

    /// Every host of mz_hosts.
    pub(super) fn read_hosts(&self) -> Result<BTreeMap<Ipv4Addr, MacAddr>, DataplaneError> {
        Ok(read_all(&self.hosts, names::HOSTS)?
            .into_iter()
            .map(|(ip, host)| (ip_from_be(ip), MacAddr(host.mac)))
            .collect())
    }

    /// Every slot of mz_host_filter (0 = empty).
    pub(super) fn read_host_filter(&self) -> Result<Vec<u32>, DataplaneError> {
        let mut filter = vec![0; abi::MZ_HOST_FILTER_SLOTS as usize];
        match batch::lookup_all::<u32, u32>(self.host_filter.map()) {
            Some(entries) => {
                for (slot, value) in entries.map_err(batch_err(names::HOST_FILTER))? {
                    if let Some(s) = filter.get_mut(slot as usize) {
                        *s = value;
                    }
                }
            }
            None => {
                for (slot, s) in filter.iter_mut().enumerate() {
                    *s = self
                        .host_filter
                        .get(&(slot as u32), 0)
                        .map_err(map_err(names::HOST_FILTER))?;
                }
            }
        }
        Ok(filter)
    }

    pub(super) fn read_vpcs(&self) -> Result<BTreeMap<u32, abi::mz_vpc>, DataplaneError> {
        Ok(read_all(&self.vpcs, names::VPCS)?.into_iter().collect())
    }

    /// Removes a VPC's entry only (not its members).
    pub(super) fn remove_vpc_entry(&mut self, vni: u32) -> Result<(), DataplaneError> {
        ignore_missing(self.vpcs.remove(&vni), names::VPCS)
    }

    pub(super) fn read_members(
        &self,
    ) -> Result<BTreeMap<MemberKey, abi::mz_member>, DataplaneError> {
        Ok(read_all(&self.vpc_members, names::VPC_MEMBERS)?
            .into_iter()
            .map(|(key, m)| ((key.vni, ip_from_be(key.host_ip_be)), m))
            .collect())
    }

    pub(super) fn member(
        &self,
        (vni, ip): MemberKey,
    ) -> Result<Option<abi::mz_member>, DataplaneError> {
        let key = abi::mz_member_key {
            vni,
            host_ip_be: ip_be(ip),
        };
        match self.vpc_members.get(&key, 0) {
            Ok(member) => Ok(Some(member)),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(map_err(names::VPC_MEMBERS)(err)),
        }
    }

    pub(super) fn write_member(
        &mut self,
        (vni, ip): MemberKey,
        member: &abi::mz_member,
    ) -> Result<(), DataplaneError> {
        let key = abi::mz_member_key {
            vni,
            host_ip_be: ip_be(ip),
        };
        self.vpc_members
            .insert(key, member, 0)
            .map_err(map_err(names::VPC_MEMBERS))
    }

    pub(super) fn remove_members(&mut self, keys: &[MemberKey]) -> Result<(), DataplaneError> {
        for (vni, ip) in keys {
            let key = abi::mz_member_key {
                vni: *vni,
                host_ip_be: ip_be(*ip),
            };
            ignore_missing(self.vpc_members.remove(&key), names::VPC_MEMBERS)?;
        }
        Ok(())
    }

    pub(super) fn read_networks(
        &self,
    ) -> Result<BTreeMap<NetworkKey, abi::mz_network>, DataplaneError> {
        self.networks
            .iter()
            .map(|entry| {
                let (key, net) = entry.map_err(map_err(names::NETWORKS))?;
                let [vni_be, prefix_be] = key.data();
                let len = key.prefix_len().saturating_sub(32).min(32) as u8;
                let prefix = Ipv4Net::new(ip_from_be(prefix_be), len).expect("at most /32");
                Ok(((u32::from_be(vni_be), prefix), net))
            })
            .collect()
    }

    pub(super) fn read_endpoints(
        &self,
    ) -> Result<BTreeMap<EndpointKey, abi::mz_endpoint>, DataplaneError> {
        Ok(read_all(&self.endpoints, names::ENDPOINTS)?
            .into_iter()
            .map(|(key, ep)| ((key.vni, ip_from_be(key.ip_be)), ep))
            .collect())
    }

    pub(super) fn read_local_ifaces(
        &self,
    ) -> Result<BTreeMap<u32, abi::mz_local_iface>, DataplaneError> {
        Ok(read_all(&self.local_ifaces, names::LOCAL_IFACES)?
            .into_iter()
            .collect())
    }

    /// Writes a host's MAC, and nothing else (no filter slot, no next-hop refresh).
    pub(super) fn write_host(&mut self, ip: Ipv4Addr, mac: MacAddr) -> Result<(), DataplaneError> {
        self.hosts
            .insert(
                ip_be(ip),
                abi::mz_host {
                    mac: mac.0,
                    reserved: 0,
                },
                0,
            )
            .map_err(map_err(names::HOSTS))
    }

    pub(super) fn remove_network_entry(
        &mut self,
        (vni, prefix): NetworkKey,
    ) -> Result<(), DataplaneError> {
        ignore_missing(
            self.networks.remove(&network_key(vni, prefix)),
            names::NETWORKS,
        )
    }

    pub(super) fn remove_host_entry(&mut self, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        ignore_missing(self.hosts.remove(&ip_be(ip)), names::HOSTS)
    }

    pub(super) fn write_host_filter_slot(
        &mut self,
        slot: u32,
        ip_be: u32,
    ) -> Result<(), DataplaneError> {
        self.host_filter
            .set(slot, ip_be, 0)
            .map_err(map_err(names::HOST_FILTER))
    }

    pub(super) fn write_vpc(&mut self, vni: u32, vpc: &abi::mz_vpc) -> Result<(), DataplaneError> {
        self.vpcs.insert(vni, vpc, 0).map_err(map_err(names::VPCS))
    }

    pub(super) fn write_network(
        &mut self,
        (vni, prefix): NetworkKey,
        net: &abi::mz_network,
    ) -> Result<(), DataplaneError> {
        self.networks
            .insert(&network_key(vni, prefix), net, 0)
            .map_err(map_err(names::NETWORKS))
    }

    pub(super) fn write_endpoint(
        &mut self,
        (vni, ip): EndpointKey,
        ep: &abi::mz_endpoint,
    ) -> Result<(), DataplaneError> {
        self.endpoints
            .insert(endpoint_key(vni, ip), ep, 0)
            .map_err(map_err(names::ENDPOINTS))
    }

    /// Writes many endpoint entries (batched where the kernel can).
    pub(super) fn write_endpoints(
        &mut self,
        entries: &[(EndpointKey, abi::mz_endpoint)],
    ) -> Result<(), DataplaneError> {
        let raw: Vec<_> = entries
            .iter()
            .map(|((vni, ip), ep)| (endpoint_key(*vni, *ip), *ep))
            .collect();
        match batch::update(self.endpoints.map(), &raw) {
            Some(result) => result.map_err(batch_err(names::ENDPOINTS)),
            None => entries
                .iter()
                .try_for_each(|(key, ep)| self.write_endpoint(*key, ep)),
        }
    }

    /// Removes endpoint entries only (not their veth registrations); missing ones are fine.
    pub(super) fn remove_endpoint_entries(
        &mut self,
        keys: &[EndpointKey],
    ) -> Result<(), DataplaneError> {
        let raw: Vec<_> = keys
            .iter()
            .map(|(vni, ip)| endpoint_key(*vni, *ip))
            .collect();
        match batch::delete(self.endpoints.map(), &raw) {
            Some(result) => result.map_err(batch_err(names::ENDPOINTS)),
            None => keys
                .iter()
                .try_for_each(|key| self.remove_endpoint_entry(*key)),
        }
    }

    /// Removes an endpoint's entry only (not its veth registration).
    pub(super) fn remove_endpoint_entry(
        &mut self,
        (vni, ip): EndpointKey,
    ) -> Result<(), DataplaneError> {
        ignore_missing(
            self.endpoints.remove(&endpoint_key(vni, ip)),
            names::ENDPOINTS,
        )
    }

    pub(super) fn write_local_iface(
        &mut self,
        ifindex: u32,
        iface: &abi::mz_local_iface,
    ) -> Result<(), DataplaneError> {
        self.local_ifaces
            .insert(ifindex, iface, 0)
            .map_err(map_err(names::LOCAL_IFACES))
    }

    pub(super) fn remove_local_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        ignore_missing(self.local_ifaces.remove(&ifindex), names::LOCAL_IFACES)
    }

    /// Zeroes a local endpoint's counter slot (for a new owner).
    pub(super) fn zero_endpoint_stats(&mut self, slot: u16) -> Result<(), DataplaneError> {
        self.endpoint_stats
            .set(u32::from(slot), per_cpu_zeros()?, 0)
            .map_err(map_err(names::ENDPOINT_STATS))
    }

    /// Forgets what the data plane learned about the endpoints `stale(vni, address, host)`
    /// picks: their mz_learned entries, and their slot in the per-CPU cache that spares the
    /// learning path a lookup (left there, it would keep a resumed flow from being learned
    /// again). Returns how many entries were forgotten.
    pub fn forget_learned(
        &mut self,
        stale: impl Fn(u32, Ipv4Addr, Ipv4Addr) -> bool,
    ) -> Result<usize, DataplaneError> {
        let mut forgotten = Vec::new();
        for entry in self.learned.iter() {
            let (key, learned) = entry.map_err(map_err(names::LEARNED))?;
            if stale(
                key.vni,
                ip_from_be(key.ip_be),
                ip_from_be(learned.host_ip_be),
            ) {
                forgotten.push(key);
            }
        }
        for key in &forgotten {
            ignore_missing(self.learned.remove(key), names::LEARNED)?;
            self.forget_cached(key)?;
        }
        Ok(forgotten.len())
    }

    /// [`Self::forget_learned`] for the learned locations of `keys` alone: one lookup each,
    /// instead of a walk of the whole map.
    pub fn forget_learned_of<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a EndpointKey>,
        stale: impl Fn(u32, Ipv4Addr, Ipv4Addr) -> bool,
    ) -> Result<usize, DataplaneError> {
        let mut forgotten = 0;
        for (vni, ip) in keys {
            let Some(host) = self.learned_host(*vni, *ip)? else {
                continue;
            };
            if stale(*vni, *ip, host) {
                let key = endpoint_key(*vni, *ip);
                ignore_missing(self.learned.remove(&key), names::LEARNED)?;
                self.forget_cached(&key)?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    /// Empties the learned-cache slot of `key` on every CPU where it holds `key`. (A packet
    /// on another CPU may rewrite the slot between the read and the write; the cache then
    /// merely costs a lookup or delays learning one flow, it never misdirects traffic.)
    fn forget_cached(&mut self, key: &abi::mz_endpoint_key) -> Result<(), DataplaneError> {
        let slot = flow_hash(key.vni, key.ip_be) & (abi::MZ_LEARNED_CACHE_SLOTS - 1);
        let per_cpu = self
            .learned_cache
            .get(&slot, 0)
            .map_err(map_err(names::LEARNED_CACHE))?;
        let holds = |e: &abi::mz_learned_cache_entry| e.vni == key.vni && e.ip_be == key.ip_be;
        if !per_cpu.iter().any(holds) {
            return Ok(());
        }
        let cleared: Vec<_> = per_cpu
            .iter()
            .map(|e| if holds(e) { Default::default() } else { *e })
            .collect();
        let values = PerCpuValues::try_from(cleared)
            .map_err(|err| DataplaneError::Invalid(format!("per-CPU values: {err}")))?;
        self.learned_cache
            .set(slot, values, 0)
            .map_err(map_err(names::LEARNED_CACHE))
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

    /// Every counter slot, summed over CPUs (in one batch where the kernel can).
    pub fn counters(&self) -> Result<Counters, DataplaneError> {
        let sum = |values: &[abi::mz_counter_value]| {
            values
                .iter()
                .fold(abi::mz_counter_value::default(), |sum, v| {
                    abi::mz_counter_value {
                        packets: sum.packets + v.packets,
                        bytes: sum.bytes + v.bytes,
                    }
                })
        };
        let cpus = aya::util::nr_cpus().map_err(|(what, err)| {
            DataplaneError::Invalid(format!("cannot count CPUs ({what}): {err}"))
        })?;
        let mut slots = vec![CounterValue::default(); abi::MZ_COUNTER_SLOTS as usize];
        if let Some(entries) =
            batch::lookup_all_per_cpu::<u32, abi::mz_counter_value>(self.counters.map(), cpus, sum)
        {
            for (slot, v) in entries.map_err(batch_err(names::COUNTERS))? {
                if let Some(s) = slots.get_mut(slot as usize) {
                    *s = CounterValue {
                        packets: v.packets,
                        bytes: v.bytes,
                    };
                }
            }
            return Ok(Counters::from_slots(slots));
        }
        for (slot, s) in slots.iter_mut().enumerate() {
            let per_cpu = self
                .counters
                .get(&(slot as u32), 0)
                .map_err(map_err(names::COUNTERS))?;
            let v = sum(&per_cpu);
            *s = CounterValue {
                packets: v.packets,
                bytes: v.bytes,
            };
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

pub(super) fn check_vni(vni: u32) -> Result<(), DataplaneError> {
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
        let key = network_key(100, Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 3, 77), 16));
        assert_eq!(key.prefix_len(), 48);
        assert_eq!(
            key.data(),
            [100u32.to_be(), ip_be(Ipv4Addr::new(10, 0, 0, 0))]
        );
        let all = network_key(7, Ipv4Net::new_assert(Ipv4Addr::new(1, 2, 3, 4), 0));
        assert_eq!(all.data()[1], 0, "/0 keeps no address bits");
        let host = network_key(7, Ipv4Net::new_assert(Ipv4Addr::new(1, 2, 3, 4), 32));
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
