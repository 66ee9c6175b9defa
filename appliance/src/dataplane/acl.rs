//! The acl function: each VPC's ordered rules compiled into address classes and (classes,
//! protocol, port) entries whose lookups do not grow with the rules (mizar_abi.h says how the
//! function looks them up), and published per VPC as a whole generation.
//!
//! Compiling, per VPC and direction:
//! 1. Each side (source, destination) has its matchers: the distinct address sets its rules
//!    name (a CIDR, a label group's addresses). Every prefix of them goes into `mz_acl_addrs`;
//!    the longest match of an address finds the matchers it belongs to, interned as a class
//!    number (0: none).
//! 2. For a pair of classes, the rules that match are those naming a matcher of each class or
//!    "any". Their first-match decision over (protocol, port) is painted rule by rule, merged,
//!    and written as LPM entries (port ranges as prefixes). A pair whose rules are those of
//!    (source class, 0), and a (source class, 0) whose rules are those of (0, 0), is left out:
//!    the function falls back to those.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap as StdHashMap},
    hash::{Hash, Hasher},
};

use aya::maps::{HashMap, LpmTrie, MapData, PerCpuHashMap, PerCpuValues, lpm_trie::Key};
use mizar_ebpf::{
    abi, ip_be,
    maps::{ACL_ADDRS, ACL_FLOWS, ACL_HITS, ACL_HOSTS, ACL_RULES, ACL_VPCS},
};

use super::{DataplaneError, Ipv4Net, PinLayout, maps::open};

/// Which way, seen from the endpoint: `MZ_ACL_INGRESS` (0) or `MZ_ACL_EGRESS` (1).
pub type AclDirection = u32;

/// The addresses a rule's side matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclAddrs {
    Any,
    /// A CIDR, or a group's addresses (empty: a group without members, matching nothing).
    Prefixes(Vec<Ipv4Net>),
}

/// One rule as the compiler takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclRule {
    /// The store's id: the rule's hit counter, and what a decision names.
    pub id: u32,
    pub direction: AclDirection,
    pub allow: bool,
    pub src: AclAddrs,
    pub dst: AclAddrs,
    /// None: every protocol.
    pub proto: Option<u8>,
    /// Destination ports, inclusive (TCP, UDP, SCTP only).
    pub ports: Option<(u16, u16)>,
}

/// A VPC's ACL: its rules in order, the default per direction, the epoch flows are judged in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AclVpc {
    pub default_allow: [bool; 2],
    pub epoch: u32,
    pub rules: Vec<AclRule>,
}

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclDecision {
    pub allow: bool,
    /// The rule's id.
    pub rule: u32,
}

/// A prefix of `mz_acl_addrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrEntry {
    pub direction: AclDirection,
    /// 0: source, 1: destination.
    pub side: u32,
    pub net: Ipv4Net,
    pub class: u32,
}

/// What an entry of `mz_acl_rules` matches after its classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtoMatch {
    Any,
    Proto(u8),
    /// A protocol and the ports of a prefix: (protocol, first port, prefix length in bits).
    Ports(u8, u16, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleEntry {
    pub direction: AclDirection,
    pub src_class: u32,
    pub dst_class: u32,
    pub matches: ProtoMatch,
    pub decision: AclDecision,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CompiledAcl {
    pub addrs: Vec<AddrEntry>,
    pub entries: Vec<RuleEntry>,
}

/// Work the compiler does at most for one VPC (pairs of classes it considers), so an ACL
/// whose two sides both have many classes is refused instead of filling the kernel.
const MAX_PAIR_WORK: usize = 4_000_000;

/// Protocols with ports.
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132)
}

/// The decision of a VPC's rules for one packet, found by reading the rules in order: what
/// the compiled entries must agree with (the tests compare the two).
pub fn judge_in_order(
    vpc: &AclVpc,
    direction: AclDirection,
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    proto: u8,
    port: u16,
) -> AclDecision {
    let covers = |addrs: &AclAddrs, ip| match addrs {
        AclAddrs::Any => true,
        AclAddrs::Prefixes(nets) => nets.iter().any(|n| n.contains(&ip)),
    };
    vpc.rules
        .iter()
        .filter(|r| r.direction == direction)
        .find(|r| {
            covers(&r.src, src)
                && covers(&r.dst, dst)
                && r.proto.is_none_or(|p| p == proto)
                && r.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port))
        })
        .map_or(
            AclDecision {
                allow: vpc.default_allow[direction as usize & 1],
                rule: 0,
            },
            |r| AclDecision {
                allow: r.allow,
                rule: r.id,
            },
        )
}

/// One side's classes: matcher index per rule (None: any), the prefixes with their class, and
/// the classes each matcher belongs to.
struct Side {
    matcher_of_rule: Vec<Option<usize>>,
    prefixes: Vec<(Ipv4Net, u32)>,
    classes_of_matcher: Vec<Vec<u32>>,
    class_count: u32,
}

fn classify<'a>(addrs: impl Iterator<Item = &'a AclAddrs>) -> Side {
    let mut matchers: StdHashMap<&'a Vec<Ipv4Net>, usize> = StdHashMap::new();
    let mut matcher_of_rule = Vec::new();
    let mut by_prefix: BTreeMap<Ipv4Net, BTreeSet<usize>> = BTreeMap::new();
    for a in addrs {
        matcher_of_rule.push(match a {
            AclAddrs::Any => None,
            AclAddrs::Prefixes(nets) => {
                let next = matchers.len();
                let idx = *matchers.entry(nets).or_insert(next);
                for net in nets {
                    by_prefix.entry(net.trunc()).or_default().insert(idx);
                }
                Some(idx)
            }
        });
    }
    let mut interned: StdHashMap<BTreeSet<usize>, u32> = StdHashMap::new();
    let mut prefixes = Vec::new();
    let mut classes_of_matcher = vec![Vec::new(); matchers.len()];
    for net in by_prefix.keys() {
        // The matchers of every prefix containing this one (itself included).
        let mut signature = BTreeSet::new();
        for len in 0..=net.prefix_len() {
            let ancestor = Ipv4Net::new(net.network(), len).expect("len <= 32").trunc();
            if let Some(m) = by_prefix.get(&ancestor) {
                signature.extend(m.iter().copied());
            }
        }
        let next = interned.len() as u32 + 1;
        let class = match interned.get(&signature) {
            Some(&c) => c,
            None => {
                for &m in &signature {
                    classes_of_matcher[m].push(next);
                }
                interned.insert(signature, next);
                next
            }
        };
        prefixes.push((*net, class));
    }
    Side {
        matcher_of_rule,
        prefixes,
        classes_of_matcher,
        class_count: interned.len() as u32 + 1,
    }
}

/// Merges two lists of rule indices (each in rule order) into one in rule order.
fn merge(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i] <= b[j]) {
            if j < b.len() && a[i] == b[j] {
                j += 1;
            }
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out
}

/// The ports a range covers, as prefixes (first port, prefix length).
fn port_prefixes(mut lo: u32, hi: u32) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    while lo <= hi {
        let mut size = if lo == 0 {
            1 << 16
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, 16 - size.trailing_zeros() as u8));
        lo += size;
    }
    out
}

/// First-match painting of one pair's rules over (protocol, port).
fn paint(rules: &[&AclRule], list: &[usize]) -> Vec<(ProtoMatch, AclDecision)> {
    let decision = |r: &AclRule| AclDecision {
        allow: r.allow,
        rule: r.id,
    };
    let mut out = Vec::new();
    // What a protocol without entries of its own falls back to (the same pair's Any entry):
    // its ports decided by that same rule need no entries.
    let any = list
        .iter()
        .find(|&&i| rules[i].proto.is_none())
        .map(|&i| decision(rules[i]));
    if let Some(d) = any {
        out.push((ProtoMatch::Any, d));
    }
    let protos: BTreeSet<u8> = list.iter().filter_map(|&i| rules[i].proto).collect();
    for q in protos {
        let of_q: Vec<&AclRule> = list
            .iter()
            .map(|&i| rules[i])
            .filter(|r| r.proto.is_none_or(|p| p == q))
            .collect();
        if !has_ports(q) {
            if any != Some(decision(of_q[0])) {
                out.push((ProtoMatch::Proto(q), decision(of_q[0])));
            }
            continue;
        }
        // Elementary segments between every range's ends; each takes the first rule that
        // covers it (a "next unpainted" jump list keeps this near linear).
        let range = |r: &AclRule| {
            r.ports
                .map_or((0u32, 65535u32), |(lo, hi)| (lo.into(), hi.into()))
        };
        let mut cuts: Vec<u32> = vec![0, 65536];
        for r in &of_q {
            let (lo, hi) = range(r);
            cuts.push(lo);
            cuts.push(hi + 1);
        }
        cuts.sort_unstable();
        cuts.dedup();
        let segments = cuts.len() - 1;
        let mut painted: Vec<Option<AclDecision>> = vec![None; segments];
        let mut next: Vec<usize> = (0..=segments).collect();
        fn find(next: &mut [usize], mut i: usize) -> usize {
            while next[i] != i {
                next[i] = next[next[i]];
                i = next[i];
            }
            i
        }
        for r in &of_q {
            let (lo, hi) = range(r);
            let first = cuts.binary_search(&lo).expect("a cut");
            let end = cuts.binary_search(&(hi + 1)).expect("a cut");
            let mut s = find(&mut next, first);
            while s < end {
                painted[s] = Some(decision(r));
                next[s] = s + 1;
                s = find(&mut next, s + 1);
            }
        }
        let mut runs: Vec<(u32, u32, AclDecision)> = Vec::new();
        for (s, d) in painted.iter().enumerate() {
            let Some(d) = *d else { continue };
            if any == Some(d) {
                continue;
            }
            let (lo, hi) = (cuts[s], cuts[s + 1] - 1);
            match runs.last_mut() {
                Some(last) if last.2 == d && last.1 + 1 == lo => last.1 = hi,
                _ => runs.push((lo, hi, d)),
            }
        }
        if let [(0, 65535, d)] = runs[..] {
            out.push((ProtoMatch::Proto(q), d));
            continue;
        }
        for (lo, hi, d) in runs {
            for (port, len) in port_prefixes(lo, hi) {
                out.push((ProtoMatch::Ports(q, port, len), d));
            }
        }
    }
    out
}

/// Compiles one VPC's rules. Refuses an ACL whose compiled form would not fit.
pub fn compile(vpc_name: &str, vpc: &AclVpc) -> Result<CompiledAcl, DataplaneError> {
    let mut out = CompiledAcl::default();
    for direction in [abi::MZ_ACL_INGRESS, abi::MZ_ACL_EGRESS] {
        let empty = |a: &AclAddrs| matches!(a, AclAddrs::Prefixes(p) if p.is_empty());
        let rules: Vec<&AclRule> = vpc
            .rules
            .iter()
            .filter(|r| r.direction == direction && !empty(&r.src) && !empty(&r.dst))
            .collect();
        if rules.is_empty() {
            continue;
        }
        let src = classify(rules.iter().map(|r| &r.src));
        let dst = classify(rules.iter().map(|r| &r.dst));
        for (side, s) in [(0, &src), (1, &dst)] {
            out.addrs
                .extend(s.prefixes.iter().map(|&(net, class)| AddrEntry {
                    direction,
                    side,
                    net,
                    class,
                }));
        }
        let all_src: Vec<u32> = (0..src.class_count).collect();
        let src_classes = |i: usize| match src.matcher_of_rule[i] {
            None => all_src.as_slice(),
            Some(m) => src.classes_of_matcher[m].as_slice(),
        };
        // (0, 0): rules of any source and any destination; (s, 0): those plus the rules of
        // source class s and any destination; (s, d): those plus rules naming d's matchers.
        let mut any_any = Vec::new();
        let mut src_only: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut extra: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
        let mut work = 0usize;
        for i in 0..rules.len() {
            match (src.matcher_of_rule[i], dst.matcher_of_rule[i]) {
                (None, None) => any_any.push(i),
                (Some(m), None) => {
                    for &s in &src.classes_of_matcher[m] {
                        src_only.entry(s).or_default().push(i);
                    }
                }
                (_, Some(m)) => {
                    let (ss, ds) = (src_classes(i), &dst.classes_of_matcher[m]);
                    work += ss.len() * ds.len();
                    if work > MAX_PAIR_WORK {
                        return Err(DataplaneError::Invalid(format!(
                            "the ACL of VPC {vpc_name:?} is too large to compile: its rules \
                             combine more than {MAX_PAIR_WORK} pairs of source and \
                             destination address classes; use fewer distinct CIDRs and groups \
                             on one of the two sides (\"any\" on a side combines with nothing)"
                        )));
                    }
                    for &s in ss {
                        for &d in ds {
                            extra.entry((s, d)).or_default().push(i);
                        }
                    }
                }
            }
        }
        let mut emit = |s: u32, d: u32, list: &[usize]| {
            for (matches, decision) in paint(&rules, list) {
                out.entries.push(RuleEntry {
                    direction,
                    src_class: s,
                    dst_class: d,
                    matches,
                    decision,
                });
            }
        };
        if !any_any.is_empty() {
            emit(0, 0, &any_any);
        }
        let mut lists: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (s, own) in &src_only {
            let list = merge(&any_any, own);
            emit(*s, 0, &list);
            lists.insert(*s, list);
        }
        for ((s, d), own) in &extra {
            let base = lists.get(s).unwrap_or(&any_any);
            emit(*s, *d, &merge(base, own));
        }
        let limit = abi::MZ_MAX_ACL_ENTRIES as usize / 2;
        if out.entries.len() > limit || out.addrs.len() > abi::MZ_MAX_ACL_ADDRS as usize / 2 {
            return Err(DataplaneError::Invalid(format!(
                "the ACL of VPC {vpc_name:?} compiles to {} entries and {} address prefixes, \
                 more than the {limit} and {} one VPC may use; merge port ranges or CIDRs",
                out.entries.len(),
                out.addrs.len(),
                abi::MZ_MAX_ACL_ADDRS / 2
            )));
        }
    }
    Ok(out)
}

impl CompiledAcl {
    /// The compiled entries' decision for a packet, looked up as the function does: what the
    /// tests hold against [`judge_in_order`].
    pub fn lookup(
        &self,
        vpc: &AclVpc,
        direction: AclDirection,
        src: std::net::Ipv4Addr,
        dst: std::net::Ipv4Addr,
        proto: u8,
        port: u16,
    ) -> AclDecision {
        let class = |side: u32, ip| {
            self.addrs
                .iter()
                .filter(|a| a.direction == direction && a.side == side && a.net.contains(&ip))
                .max_by_key(|a| a.net.prefix_len())
                .map_or(0, |a| a.class)
        };
        let (sc, dc) = (class(0, src), class(1, dst));
        let find = |sc: u32, dc: u32| {
            self.entries
                .iter()
                .filter(|e| e.direction == direction && e.src_class == sc && e.dst_class == dc)
                .filter_map(|e| {
                    let len = match e.matches {
                        ProtoMatch::Any => 0,
                        ProtoMatch::Proto(p) if p == proto => 8,
                        ProtoMatch::Ports(p, first, len) if p == proto => {
                            let mask = if len == 0 { 0 } else { u16::MAX << (16 - len) };
                            if port & mask != first & mask {
                                return None;
                            }
                            8 + u32::from(len)
                        }
                        _ => return None,
                    };
                    Some((len, e.decision))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, d)| d)
        };
        let mut hit = find(sc, dc);
        if hit.is_none() && dc != 0 {
            hit = find(sc, 0);
        }
        if hit.is_none() && sc != 0 {
            hit = find(0, 0);
        }
        hit.unwrap_or(AclDecision {
            allow: vpc.default_allow[direction as usize & 1],
            rule: 0,
        })
    }

    fn digest(&self, vpc: &AclVpc) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        vpc.default_allow.hash(&mut h);
        vpc.epoch.hash(&mut h);
        // 0 would read as "never written".
        h.finish().max(1)
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

fn tag(vni: u32, generation: u32, direction: u32, side: u32) -> u32 {
    (vni << 3) | ((generation & 1) << 2) | ((direction & 1) << 1) | (side & 1)
}

fn addr_key(vni: u32, generation: u32, a: &AddrEntry) -> Key<[u32; 2]> {
    Key::new(
        32 + u32::from(a.net.prefix_len()),
        [
            tag(vni, generation, a.direction, a.side).to_be(),
            ip_be(a.net.network()),
        ],
    )
}

fn rule_key(vni: u32, generation: u32, e: &RuleEntry) -> Key<[u32; 4]> {
    let (len, proto, port) = match e.matches {
        ProtoMatch::Any => (96, 0, 0u16),
        ProtoMatch::Proto(p) => (104, p, 0),
        ProtoMatch::Ports(p, port, bits) => (104 + u32::from(bits), p, port),
    };
    let [hi, lo] = port.to_be_bytes();
    Key::new(
        len,
        [
            tag(vni, generation, e.direction, 0).to_be(),
            e.src_class.to_be(),
            e.dst_class.to_be(),
            u32::from_ne_bytes([proto, hi, lo, 0]),
        ],
    )
}

/// The VNI and generation a key's tag names.
fn tag_owner(tag_be: u32) -> (u32, u32) {
    let tag = u32::from_be(tag_be);
    (tag >> 3, (tag >> 2) & 1)
}

/// Removes the entries of a trie whose key's tag (the first word of the key data) names a
/// (VNI, generation) in `stale`.
fn remove_tagged<K: aya::Pod, V: aya::Pod>(
    trie: &mut LpmTrie<MapData, K, V>,
    name: &'static str,
    stale: &BTreeSet<(u32, u32)>,
    tag_be: impl Fn(&K) -> u32,
) -> Result<(), DataplaneError> {
    let keys: Vec<Key<K>> = trie
        .keys()
        .collect::<Result<_, _>>()
        .map_err(map_err(name))?;
    for k in keys
        .iter()
        .filter(|k| stale.contains(&tag_owner(tag_be(&k.data()))))
    {
        trie.remove(k).map_err(map_err(name))?;
    }
    Ok(())
}

/// The acl function's maps.
pub struct AclMaps {
    vpcs: HashMap<MapData, u32, abi::mz_acl_vpc>,
    addrs: LpmTrie<MapData, [u32; 2], u32>,
    /// The /32 addresses, apart (see mizar_abi.h).
    hosts: HashMap<MapData, abi::mz_acl_host_key, u32>,
    rules: LpmTrie<MapData, [u32; 4], abi::mz_acl_decision>,
    hits: PerCpuHashMap<MapData, u32, u64>,
    flows: HashMap<MapData, abi::mz_acl_flow_key, abi::mz_acl_flow>,
}

/// Hits per rule id, summed over the CPUs.
pub type AclHits = BTreeMap<u32, u64>;

impl AclMaps {
    pub fn open(pins: &PinLayout) -> Result<Self, DataplaneError> {
        Ok(Self {
            vpcs: open(pins, ACL_VPCS)?,
            addrs: open(pins, ACL_ADDRS)?,
            hosts: open(pins, ACL_HOSTS)?,
            rules: open(pins, ACL_RULES)?,
            hits: open(pins, ACL_HITS)?,
            flows: open(pins, ACL_FLOWS)?,
        })
    }

    /// Packets each rule decided (the first packet of each flow it allowed, every packet it
    /// denied).
    pub fn hits(&self) -> Result<AclHits, DataplaneError> {
        let mut out = AclHits::new();
        for entry in self.hits.iter() {
            let (id, per_cpu) = entry.map_err(map_err(ACL_HITS))?;
            out.insert(id, per_cpu.iter().sum());
        }
        Ok(out)
    }

    /// Flows tracked, per VNI.
    pub fn flows_per_vni(&self) -> Result<BTreeMap<u32, u64>, DataplaneError> {
        let mut out = BTreeMap::new();
        for key in self.flows.keys() {
            let key = key.map_err(map_err(ACL_FLOWS))?;
            *out.entry(key.vni).or_default() += 1;
        }
        Ok(out)
    }

    /// Removes the entries of (VNI, generation) pairs in `stale` from both tries.
    fn remove_generations(&mut self, stale: &BTreeSet<(u32, u32)>) -> Result<(), DataplaneError> {
        if stale.is_empty() {
            return Ok(());
        }
        remove_tagged(&mut self.addrs, ACL_ADDRS, stale, |k| k[0])?;
        let hosts: Vec<abi::mz_acl_host_key> = self
            .hosts
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(ACL_HOSTS))?;
        for k in hosts
            .iter()
            .filter(|k| stale.contains(&tag_owner(k.tag_be)))
        {
            self.hosts.remove(k).map_err(map_err(ACL_HOSTS))?;
        }
        remove_tagged(&mut self.rules, ACL_RULES, stale, |k| k[0])
    }

    /// Brings the maps to `wanted` (VNI → ACL; names for errors). Only VPCs whose compiled
    /// form changed are published. Returns how many VPCs changed.
    pub fn sync(
        &mut self,
        wanted: &BTreeMap<u32, (String, AclVpc)>,
    ) -> Result<usize, DataplaneError> {
        let mut compiled = BTreeMap::new();
        for (vni, (name, vpc)) in wanted {
            let c = compile(name, vpc)?;
            let digest = c.digest(vpc);
            compiled.insert(*vni, (c, digest));
        }
        let current: BTreeMap<u32, abi::mz_acl_vpc> = self
            .vpcs
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(ACL_VPCS))?;
        let mut changed = 0;
        // Stale generations: the one each changed VPC leaves, and both of a removed VPC.
        let mut stale = BTreeSet::new();
        let mut removed = BTreeSet::new();
        for vni in current.keys().filter(|v| !wanted.contains_key(v)) {
            self.vpcs.remove(vni).map_err(map_err(ACL_VPCS))?;
            stale.extend([(*vni, 0), (*vni, 1)]);
            removed.insert(*vni);
            changed += 1;
        }
        let mut writes = Vec::new();
        for (vni, (c, digest)) in &compiled {
            let old = current.get(vni);
            if old.is_some_and(|o| o.digest == *digest) {
                continue;
            }
            let generation = old.map_or(0, |o| (o.generation & 1) ^ 1);
            writes.push((*vni, generation, old.is_some()));
            // Leftovers of the generation about to be written (an interrupted sync).
            let mut leftover = BTreeSet::new();
            leftover.insert((*vni, generation));
            if old.is_none() {
                leftover.insert((*vni, generation ^ 1));
            }
            self.remove_generations(&leftover)?;
            for a in &c.addrs {
                if a.net.prefix_len() == 32 {
                    let key = abi::mz_acl_host_key {
                        tag_be: tag(*vni, generation, a.direction, a.side).to_be(),
                        ip_be: ip_be(a.net.network()),
                    };
                    self.hosts
                        .insert(key, a.class, 0)
                        .map_err(map_err(ACL_HOSTS))?;
                } else {
                    self.addrs
                        .insert(&addr_key(*vni, generation, a), a.class, 0)
                        .map_err(map_err(ACL_ADDRS))?;
                }
            }
            for e in &c.entries {
                let value = abi::mz_acl_decision {
                    action: if e.decision.allow {
                        abi::MZ_ACL_ALLOW
                    } else {
                        abi::MZ_ACL_DENY
                    },
                    rule: e.decision.rule,
                };
                self.rules
                    .insert(&rule_key(*vni, generation, e), value, 0)
                    .map_err(map_err(ACL_RULES))?;
            }
            let vpc = &wanted[vni].1;
            let action = |allow: bool| {
                if allow {
                    abi::MZ_ACL_ALLOW as u8
                } else {
                    abi::MZ_ACL_DENY as u8
                }
            };
            let value = abi::mz_acl_vpc {
                generation,
                epoch: vpc.epoch,
                default_action: [action(vpc.default_allow[0]), action(vpc.default_allow[1])],
                digest: *digest,
                ..Default::default()
            };
            self.vpcs.insert(vni, value, 0).map_err(map_err(ACL_VPCS))?;
            changed += 1;
        }
        // Hit counters: one per rule (zero for a new one), none for a rule that is gone.
        let ids: BTreeSet<u32> = wanted
            .values()
            .flat_map(|(_, v)| v.rules.iter().map(|r| r.id))
            .collect();
        let have: BTreeSet<u32> = self
            .hits
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(ACL_HITS))?;
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, err)| DataplaneError::Invalid(format!("counting CPUs: {err}")))?;
        for id in ids.difference(&have) {
            let zeros = PerCpuValues::try_from(vec![0u64; cpus])
                .map_err(|err| DataplaneError::Invalid(format!("per-CPU zeros: {err}")))?;
            self.hits.insert(id, zeros, 0).map_err(map_err(ACL_HITS))?;
        }
        for id in have.difference(&ids) {
            self.hits.remove(id).map_err(map_err(ACL_HITS))?;
        }
        if stale.is_empty() && writes.iter().all(|(_, _, had)| !had) {
            return Ok(changed);
        }
        // No packet still reads the generations the flips left: remove them.
        super::rcu::synchronize()?;
        stale.extend(
            writes
                .iter()
                .filter(|(_, _, had)| *had)
                .map(|(vni, generation, _)| (*vni, generation ^ 1)),
        );
        self.remove_generations(&stale)?;
        if !removed.is_empty() {
            // A VNI given to a new VPC later must not find the old one's flows.
            let keys: Vec<abi::mz_acl_flow_key> = self
                .flows
                .keys()
                .collect::<Result<_, _>>()
                .map_err(map_err(ACL_FLOWS))?;
            for k in keys.iter().filter(|k| removed.contains(&k.vni)) {
                // Gone already (evicted) is fine.
                let _ = self.flows.remove(k);
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn net(s: &str) -> AclAddrs {
        AclAddrs::Prefixes(vec![s.parse().unwrap()])
    }

    fn rule(
        id: u32,
        allow: bool,
        src: AclAddrs,
        dst: AclAddrs,
        proto: Option<u8>,
        ports: Option<(u16, u16)>,
    ) -> AclRule {
        AclRule {
            id,
            direction: 0,
            allow,
            src,
            dst,
            proto,
            ports,
        }
    }

    #[test]
    fn port_ranges_split_into_exact_prefixes() {
        assert_eq!(port_prefixes(0, 65535), vec![(0, 0)]);
        assert_eq!(port_prefixes(80, 80), vec![(80, 16)]);
        let parts = port_prefixes(1000, 2000);
        let covered: u32 = parts.iter().map(|(_, len)| 1u32 << (16 - len)).sum();
        assert_eq!(covered, 1001);
        assert_eq!(parts[0].0, 1000);
    }

    /// Random rule sets: the compiled entries, looked up as the kernel does, decide every probe
    /// packet as reading the rules in order does.
    #[test]
    fn compiled_entries_agree_with_first_match() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let nets = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.1.2.3/32",
            "10.2.0.0/16",
            "0.0.0.0/0",
        ];
        let hosts: Vec<Ipv4Addr> = [
            "10.1.2.3",
            "10.1.2.4",
            "10.1.9.9",
            "10.2.3.4",
            "10.9.9.9",
            "192.168.1.1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let protos = [None, Some(6), Some(17), Some(1)];
        for round in 0..200 {
            let mut vpc = AclVpc {
                default_allow: [round % 2 == 0, true],
                epoch: 0,
                rules: Vec::new(),
            };
            for id in 1..=(1 + rnd(12) as u32) {
                let side = |r: u64| match r {
                    0 | 1 => AclAddrs::Any,
                    2 => AclAddrs::Prefixes(vec![
                        nets[(r as usize) % nets.len()].parse().unwrap(),
                        "10.2.3.4/32".parse().unwrap(),
                    ]),
                    n => net(nets[n as usize % nets.len()]),
                };
                let src = side(rnd(8));
                let dst = side(rnd(8));
                let proto = protos[rnd(4) as usize];
                let ports = match proto {
                    Some(6 | 17) if rnd(2) == 0 => {
                        let lo = rnd(100) as u16 + 20;
                        Some((lo, lo + rnd(50) as u16))
                    }
                    _ => None,
                };
                vpc.rules
                    .push(rule(id, rnd(2) == 0, src, dst, proto, ports));
            }
            let compiled = compile("t", &vpc).unwrap();
            for src in &hosts {
                for dst in &hosts {
                    for proto in [6u8, 17, 1, 47] {
                        for port in [0u16, 20, 21, 50, 69, 70, 100, 119, 120, 170, 65535] {
                            let want = judge_in_order(&vpc, 0, *src, *dst, proto, port);
                            let got = compiled.lookup(&vpc, 0, *src, *dst, proto, port);
                            assert_eq!(
                                got, want,
                                "round {round}: {src} -> {dst} proto {proto} port {port}\n{vpc:#?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ten_thousand_port_rules_compile_to_entries_not_pairs() {
        let mut vpc = AclVpc::default();
        for i in 0..10_000u32 {
            let src = AclAddrs::Prefixes(vec![
                Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap(),
            ]);
            vpc.rules.push(rule(
                i + 1,
                true,
                src,
                AclAddrs::Any,
                Some(6),
                Some((443, 443)),
            ));
        }
        vpc.rules.push(rule(
            10_001,
            false,
            AclAddrs::Any,
            AclAddrs::Any,
            None,
            None,
        ));
        let c = compile("big", &vpc).unwrap();
        assert_eq!(c.addrs.len(), 10_000);
        assert!(c.entries.len() < 40_000, "{} entries", c.entries.len());
        let d = c.lookup(
            &vpc,
            0,
            Ipv4Addr::from(0x0a00_0005),
            "10.9.9.9".parse().unwrap(),
            6,
            443,
        );
        assert_eq!(
            d,
            AclDecision {
                allow: true,
                rule: 6
            }
        );
    }

    #[test]
    fn a_cross_product_too_large_is_refused_with_the_fix() {
        let mut vpc = AclVpc::default();
        for i in 0..3000u32 {
            let one = |base: u32| {
                AclAddrs::Prefixes(vec![Ipv4Net::new(Ipv4Addr::from(base + i), 32).unwrap()])
            };
            vpc.rules.push(rule(
                2 * i + 1,
                true,
                one(0x0a00_0000),
                AclAddrs::Any,
                None,
                None,
            ));
            vpc.rules.push(rule(
                2 * i + 2,
                true,
                AclAddrs::Any,
                one(0x0b00_0000),
                None,
                None,
            ));
        }
        let err = compile("wide", &vpc).unwrap_err().to_string();
        assert!(
            err.contains("too large to compile") && err.contains("fewer distinct"),
            "{err}"
        );
    }
}
