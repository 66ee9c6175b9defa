//! Capture filters: a tcpdump-style expression, compiled to the program of tests the kernel's
//! taps run before they copy anything (`struct mz_tap_filter`, see mizar_abi.h).
//!
//! ```text
//! expr      := term (("or" | "||") term)*
//! term      := factor (("and" | "&&") factor)*
//! factor    := ("not" | "!") factor | "(" expr ")" | primitive
//! primitive := [outer|inner] [src|dst] host ADDR
//!            | [outer|inner] [src|dst] net CIDR
//!            | [outer|inner] [src|dst] port N[-M]      (portrange N-M too)
//!            | [outer|inner] proto tcp|udp|icmp|sctp|N  (tcp, udp, icmp alone too)
//!            | vni N | vpc NAME | ep [VPC/]NAME
//!            | verdict drop|pass|tx|redirect|aborted  (drop, pass, tx, redirect alone too)
//!            | reason NAME | stage STAGE | fn-drop | geneve
//!            | len (<|<=|>|>=|=|!=) N | less N | greater N
//!            | tcp-flags syn|ack|fin|rst|psh|urg[,...] | icmp-type N
//! ```
//!
//! Without `outer`, addresses, ports and protocols are the innermost packet's: a Geneve frame's
//! inner packet, else the frame's own; `outer` names the frame's own IPv4 header. `host`, `net`
//! and `port` without `src` or `dst` match either side. The program is at most
//! [`abi::MZ_TAP_FILTER_TESTS`] tests, each jumping forward only.

use std::{fmt, net::Ipv4Addr};

use mizar_ebpf::{COUNTER_INFO, abi};

/// A field the taps read from a packet (values in host order; 0 when the packet has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Vni,
    Verdict,
    Reason,
    Stage,
    FnDrop,
    Len,
    Geneve,
    Ifindex,
    OuterSrc,
    OuterDst,
    OuterProto,
    OuterSport,
    OuterDport,
    InnerSrc,
    InnerDst,
    InnerProto,
    InnerSport,
    InnerDport,
    IcmpType,
    TcpFlags,
}

impl Field {
    pub const ALL: [Field; 20] = [
        Field::Vni,
        Field::Verdict,
        Field::Reason,
        Field::Stage,
        Field::FnDrop,
        Field::Len,
        Field::Geneve,
        Field::Ifindex,
        Field::OuterSrc,
        Field::OuterDst,
        Field::OuterProto,
        Field::OuterSport,
        Field::OuterDport,
        Field::InnerSrc,
        Field::InnerDst,
        Field::InnerProto,
        Field::InnerSport,
        Field::InnerDport,
        Field::IcmpType,
        Field::TcpFlags,
    ];

    /// Its index in the kernel's fields array (enum mz_tap_field).
    pub fn index(self) -> u8 {
        (match self {
            Field::Vni => abi::MZ_TAP_F_VNI,
            Field::Verdict => abi::MZ_TAP_F_VERDICT,
            Field::Reason => abi::MZ_TAP_F_REASON,
            Field::Stage => abi::MZ_TAP_F_STAGE,
            Field::FnDrop => abi::MZ_TAP_F_FN_DROP,
            Field::Len => abi::MZ_TAP_F_LEN,
            Field::Geneve => abi::MZ_TAP_F_GENEVE,
            Field::Ifindex => abi::MZ_TAP_F_IFINDEX,
            Field::OuterSrc => abi::MZ_TAP_F_OUTER_SRC,
            Field::OuterDst => abi::MZ_TAP_F_OUTER_DST,
            Field::OuterProto => abi::MZ_TAP_F_OUTER_PROTO,
            Field::OuterSport => abi::MZ_TAP_F_OUTER_SPORT,
            Field::OuterDport => abi::MZ_TAP_F_OUTER_DPORT,
            Field::InnerSrc => abi::MZ_TAP_F_INNER_SRC,
            Field::InnerDst => abi::MZ_TAP_F_INNER_DST,
            Field::InnerProto => abi::MZ_TAP_F_INNER_PROTO,
            Field::InnerSport => abi::MZ_TAP_F_INNER_SPORT,
            Field::InnerDport => abi::MZ_TAP_F_INNER_DPORT,
            Field::IcmpType => abi::MZ_TAP_F_ICMP_TYPE,
            Field::TcpFlags => abi::MZ_TAP_F_TCP_FLAGS,
        }) as u8
    }
}

/// One test: `lo <= (field & mask) <= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Test {
    pub field: Field,
    pub mask: u32,
    pub lo: u32,
    pub hi: u32,
}

impl Test {
    fn eq(field: Field, value: u32) -> Self {
        Self {
            field,
            mask: u32::MAX,
            lo: value,
            hi: value,
        }
    }

    fn range(field: Field, lo: u32, hi: u32) -> Self {
        Self {
            field,
            mask: u32::MAX,
            lo,
            hi,
        }
    }

    pub fn holds(&self, value: u32) -> bool {
        (self.lo..=self.hi).contains(&(value & self.mask))
    }
}

/// A filter expression: tests combined with and, or, not. Names (VPCs, endpoints) are
/// resolved when it is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every packet (the empty filter).
    All,
    Test(Test),
    Vpc(String),
    Endpoint(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn and(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::All, e) | (e, Expr::All) => e,
            (a, b) => Expr::And(Box::new(a), Box::new(b)),
        }
    }

    fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }

    /// Whether a packet with these fields matches (names must be resolved: see [`CompiledFilter`]).
    pub fn matches(&self, fields: &Fields) -> bool {
        match self {
            Expr::All => true,
            Expr::Test(t) => t.holds(fields.get(t.field)),
            Expr::Vpc(_) | Expr::Endpoint(_) => false,
            Expr::Not(e) => !e.matches(fields),
            Expr::And(a, b) => a.matches(fields) && b.matches(fields),
            Expr::Or(a, b) => a.matches(fields) || b.matches(fields),
        }
    }

    /// The expression with its names replaced by tests.
    pub fn resolve(&self, names: &dyn NameResolver) -> Result<Expr, String> {
        Ok(match self {
            Expr::Vpc(name) => Expr::Test(Test::eq(Field::Vni, names.vpc(name)?)),
            Expr::Endpoint(name) => {
                let (vni, ip) = names.endpoint(name)?;
                Expr::and(
                    Expr::Test(Test::eq(Field::Vni, vni)),
                    either_side(Field::InnerSrc, Field::InnerDst, |f| {
                        Test::eq(f, u32::from(ip))
                    }),
                )
            }
            Expr::Not(e) => Expr::Not(Box::new(e.resolve(names)?)),
            Expr::And(a, b) => Expr::And(Box::new(a.resolve(names)?), Box::new(b.resolve(names)?)),
            Expr::Or(a, b) => Expr::Or(Box::new(a.resolve(names)?), Box::new(b.resolve(names)?)),
            other => other.clone(),
        })
    }
}

/// What filter names refer to.
pub trait NameResolver {
    /// A VPC's VNI.
    fn vpc(&self, name: &str) -> Result<u32, String>;
    /// An endpoint's VNI and address (`VPC/NAME`, or a name no other VPC uses).
    fn endpoint(&self, name: &str) -> Result<(u32, Ipv4Addr), String>;
}

/// A packet's fields as the taps read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields(pub [u32; abi::MZ_TAP_FIELDS as usize]);

impl Fields {
    pub fn get(&self, field: Field) -> u32 {
        self.0[field.index() as usize]
    }

    pub fn set(&mut self, field: Field, value: u32) {
        self.0[field.index() as usize] = value;
    }
}

impl Fields {
    /// The fields of a frame as the kernel's taps read them (tap.h, tap_fields), over the
    /// point's own (VNI, verdict, reason, stage, fn-drop), which the caller sets first.
    pub fn read_frame(&mut self, frame: &[u8], ifindex: u32) {
        let be16 = |at: usize| u32::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
        let be32 = |at: usize| u32::from_be_bytes(frame[at..at + 4].try_into().expect("4 bytes"));
        self.set(Field::Len, frame.len() as u32);
        self.set(Field::Ifindex, ifindex);
        // An IPv4 header at `ip`, as the innermost packet's fields.
        let read_ip = |f: &mut Fields, ip: usize| -> Option<usize> {
            if frame.len() < ip + 20 || frame[ip] >> 4 != 4 || frame[ip] & 0xf < 5 {
                return None;
            }
            f.set(Field::InnerSrc, be32(ip + 12));
            f.set(Field::InnerDst, be32(ip + 16));
            let proto = frame[ip + 9];
            f.set(Field::InnerProto, u32::from(proto));
            if be16(ip + 6) & 0x1fff != 0 {
                return Some(ip);
            }
            let l4 = ip + usize::from(frame[ip] & 0xf) * 4;
            match proto {
                6 | 17 if frame.len() >= l4 + 4 => {
                    f.set(Field::InnerSport, be16(l4));
                    f.set(Field::InnerDport, be16(l4 + 2));
                    if proto == 6 && frame.len() >= l4 + 14 {
                        f.set(Field::TcpFlags, u32::from(frame[l4 + 13]));
                    }
                }
                1 if frame.len() > l4 => f.set(Field::IcmpType, u32::from(frame[l4]) + 1),
                _ => {}
            }
            Some(ip)
        };
        if frame.len() < 14 || be16(12) != 0x0800 {
            return;
        }
        let Some(ip) = read_ip(self, 14) else {
            return;
        };
        for (outer, inner) in [
            (Field::OuterSrc, Field::InnerSrc),
            (Field::OuterDst, Field::InnerDst),
            (Field::OuterProto, Field::InnerProto),
            (Field::OuterSport, Field::InnerSport),
            (Field::OuterDport, Field::InnerDport),
        ] {
            self.set(outer, self.get(inner));
        }
        if self.get(Field::OuterProto) != 17
            || self.get(Field::OuterDport) != u32::from(crate::packet::GENEVE_PORT)
        {
            return;
        }
        let geneve = ip + usize::from(frame[ip] & 0xf) * 4 + 8;
        if frame.len() < geneve + 8 || be16(geneve + 2) != 0x6558 {
            return;
        }
        self.set(Field::Geneve, 1);
        if self.get(Field::Vni) == 0 {
            self.set(Field::Vni, be32(geneve + 4) >> 8);
        }
        for f in [
            Field::InnerSrc,
            Field::InnerDst,
            Field::InnerProto,
            Field::InnerSport,
            Field::InnerDport,
        ] {
            self.set(f, 0);
        }
        let inner_eth = geneve + 8 + usize::from(frame[geneve] & 0x3f) * 4;
        if frame.len() < inner_eth + 14 || be16(inner_eth + 12) != 0x0800 {
            return;
        }
        read_ip(self, inner_eth + 14);
    }
}

/// A filter that does not parse: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// Byte offset in the expression.
    pub at: usize,
    pub message: String,
    pub expression: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the filter does not parse at column {}: {}\n  {}\n  {}^",
            self.at + 1,
            self.message,
            self.expression,
            " ".repeat(
                self.expression[..self.at.min(self.expression.len())]
                    .chars()
                    .count()
            )
        )
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    at: usize,
}

fn tokenize(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let two: String = input[at..].chars().take(2).collect();
        if ["&&", "||", "<=", ">=", "!="].contains(&two.as_str()) {
            tokens.push(Token { text: two, at });
            chars.next();
            chars.next();
            continue;
        }
        if "()!<>=".contains(c) {
            tokens.push(Token {
                text: c.to_string(),
                at,
            });
            chars.next();
            continue;
        }
        let mut end = at;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || "()!<>=&|".contains(c) {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        if end == at {
            // A lone '&' or '|'.
            tokens.push(Token {
                text: c.to_string(),
                at,
            });
            chars.next();
            continue;
        }
        tokens.push(Token {
            text: input[at..end].to_owned(),
            at,
        });
    }
    tokens
}

const PRIMITIVES: &str = "host, net, port, portrange, proto, tcp, udp, icmp, vni, vpc, ep, \
                          verdict, drop, pass, tx, redirect, reason, stage, fn-drop, geneve, len, \
                          less, greater, tcp-flags, icmp-type (with outer/inner, src/dst before \
                          host, net, port and proto)";

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

/// Parses a filter expression ("" is every packet).
pub fn parse(input: &str) -> Result<Expr, FilterError> {
    let mut p = Parser {
        input,
        tokens: tokenize(input),
        pos: 0,
    };
    if p.tokens.is_empty() {
        return Ok(Expr::All);
    }
    let expr = p.expr()?;
    if let Some(t) = p.peek() {
        return Err(p.error_at(
            t.at,
            format!(
                "{:?} follows a whole expression: join it with and/or",
                t.text
            ),
        ));
    }
    Ok(expr)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_is(&self, words: &[&str]) -> bool {
        self.peek()
            .is_some_and(|t| words.contains(&t.text.as_str()))
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn end(&self) -> usize {
        self.input.len()
    }

    fn error_at(&self, at: usize, message: String) -> FilterError {
        FilterError {
            at,
            message,
            expression: self.input.to_owned(),
        }
    }

    /// The next token, which `what` needs.
    fn value(&mut self, what: &str) -> Result<Token, FilterError> {
        match self.next() {
            Some(t)
                if !["and", "or", "not", "&&", "||", "!", "(", ")"].contains(&t.text.as_str()) =>
            {
                Ok(t)
            }
            Some(t) => Err(self.error_at(t.at, format!("{what} expected, not {:?}", t.text))),
            None => Err(self.error_at(self.end(), format!("{what} expected at the end"))),
        }
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.term()?;
        while self.peek_is(&["or", "||"]) {
            self.next();
            left = Expr::or(left, self.term()?);
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.factor()?;
        while self.peek_is(&["and", "&&"]) {
            self.next();
            left = Expr::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, FilterError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.error_at(
                self.end(),
                format!("the expression ends where a primitive was expected ({PRIMITIVES})"),
            ));
        };
        match t.text.as_str() {
            "not" | "!" => {
                self.next();
                Ok(Expr::Not(Box::new(self.factor()?)))
            }
            "(" => {
                self.next();
                let e = self.expr()?;
                match self.next() {
                    Some(c) if c.text == ")" => Ok(e),
                    Some(c) => Err(self.error_at(c.at, format!("')' expected, not {:?}", c.text))),
                    None => Err(self.error_at(
                        self.end(),
                        format!("the '(' at column {} is never closed", t.at + 1),
                    )),
                }
            }
            _ => self.primitive(),
        }
    }

    fn primitive(&mut self) -> Result<Expr, FilterError> {
        let first = self.next().expect("factor peeked a token");
        let mut word = first.text.to_ascii_lowercase();
        let mut at = first.at;
        // Qualifiers: layer, then direction.
        let mut outer = None;
        if word == "outer" || word == "inner" {
            outer = Some(word == "outer");
            let t = self.value("host, net, port or proto after outer/inner")?;
            (word, at) = (t.text.to_ascii_lowercase(), t.at);
        }
        let mut dir = None;
        if word == "src" || word == "dst" {
            dir = Some(word.clone());
            let t = self.value("host, net or port after src/dst")?;
            (word, at) = (t.text.to_ascii_lowercase(), t.at);
        }
        let outer = outer.unwrap_or(false);
        let (src_f, dst_f, proto_f, sport_f, dport_f) = if outer {
            (
                Field::OuterSrc,
                Field::OuterDst,
                Field::OuterProto,
                Field::OuterSport,
                Field::OuterDport,
            )
        } else {
            (
                Field::InnerSrc,
                Field::InnerDst,
                Field::InnerProto,
                Field::InnerSport,
                Field::InnerDport,
            )
        };
        let sided = |make: &dyn Fn(Field) -> Test, src: Field, dst: Field| match dir.as_deref() {
            Some("src") => Expr::Test(make(src)),
            Some(_) => Expr::Test(make(dst)),
            None => either_side(src, dst, make),
        };
        let no_dir = |p: &Self, what: &str| -> Result<(), FilterError> {
            match &dir {
                Some(d) => Err(p.error_at(
                    first.at,
                    format!("{d} qualifies host, net or port, not {what}"),
                )),
                None => Ok(()),
            }
        };
        let no_layer = |p: &Self, what: &str| -> Result<(), FilterError> {
            if first.text.eq_ignore_ascii_case("outer") || first.text.eq_ignore_ascii_case("inner")
            {
                Err(p.error_at(
                    first.at,
                    format!(
                        "{} qualifies host, net, port or proto, not {what}",
                        first.text
                    ),
                ))
            } else {
                Ok(())
            }
        };
        match word.as_str() {
            "host" => {
                let t = self.value("an IPv4 address after host")?;
                let ip: Ipv4Addr = t.text.parse().map_err(|_| {
                    self.error_at(t.at, format!("{:?} is not an IPv4 address", t.text))
                })?;
                Ok(sided(&|f| Test::eq(f, u32::from(ip)), src_f, dst_f))
            }
            "net" => {
                let t = self.value("a CIDR after net")?;
                let net = mizar_db::parse_cidr(&t.text)
                    .map_err(|e| self.error_at(t.at, format!("{:?} is not a CIDR: {e}", t.text)))?;
                let mask = u32::from(net.netmask());
                let base = u32::from(net.network());
                Ok(sided(
                    &|f| Test {
                        field: f,
                        mask,
                        lo: base,
                        hi: base,
                    },
                    src_f,
                    dst_f,
                ))
            }
            "port" | "portrange" => {
                let t = self.value("a port or a range N-M after port")?;
                let (lo, hi) = self.port_range(&t)?;
                if word == "portrange" && lo == hi && !t.text.contains('-') {
                    return Err(self.error_at(t.at, "portrange takes N-M".to_owned()));
                }
                Ok(sided(&|f| Test::range(f, lo, hi), sport_f, dport_f))
            }
            "proto" => {
                no_dir(self, "proto")?;
                let t = self.value("a protocol after proto")?;
                let p = self.protocol(&t)?;
                Ok(Expr::Test(Test::eq(proto_f, p)))
            }
            "tcp" | "udp" | "icmp" | "sctp" => {
                no_dir(self, &word)?;
                let p = self.protocol(&Token {
                    text: word.clone(),
                    at,
                })?;
                Ok(Expr::Test(Test::eq(proto_f, p)))
            }
            _ => {
                no_dir(self, &word)?;
                no_layer(self, &word)?;
                self.plain(&word, at)
            }
        }
    }

    /// Primitives that take no layer or direction.
    fn plain(&mut self, word: &str, at: usize) -> Result<Expr, FilterError> {
        match word {
            "vni" => {
                let t = self.value("a VNI after vni")?;
                let vni: u32 = t
                    .text
                    .parse()
                    .ok()
                    .filter(|v| (1..=0xff_ffff).contains(v))
                    .ok_or_else(|| {
                        self.error_at(t.at, format!("{:?} is not a VNI (1 to 16777215)", t.text))
                    })?;
                Ok(Expr::Test(Test::eq(Field::Vni, vni)))
            }
            "vpc" => Ok(Expr::Vpc(self.value("a VPC's name after vpc")?.text)),
            "ep" | "endpoint" => Ok(Expr::Endpoint(
                self.value("an endpoint (VPC/NAME) after ep")?.text,
            )),
            "verdict" => {
                let t = self.value("a verdict after verdict")?;
                let v = crate::dataplane::verdict_named(&t.text).ok_or_else(|| {
                    self.error_at(
                        t.at,
                        format!(
                            "{:?} is not a verdict: aborted, drop, pass, tx or redirect",
                            t.text
                        ),
                    )
                })?;
                Ok(Expr::Test(Test::eq(Field::Verdict, v)))
            }
            "drop" | "pass" | "tx" | "redirect" | "aborted" => Ok(Expr::Test(Test::eq(
                Field::Verdict,
                crate::dataplane::verdict_named(word).expect("a verdict's name"),
            ))),
            "reason" => {
                let t = self.value("a reason after reason")?;
                let slot = COUNTER_INFO
                    .iter()
                    .find(|c| c.name == t.text)
                    .map(|c| c.slot)
                    .ok_or_else(|| {
                        self.error_at(
                            t.at,
                            format!(
                                "{:?} is no reason; reasons: {}",
                                t.text,
                                COUNTER_INFO
                                    .iter()
                                    .map(|c| c.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
                Ok(Expr::Test(Test::eq(Field::Reason, slot)))
            }
            "stage" => {
                let t = self.value("a stage after stage")?;
                let stage = crate::dataplane::CHAIN_POINTS
                    .iter()
                    .find(|s| mizar_db::parse_stage(&t.text).is_ok_and(|n| n == s.name()))
                    .ok_or_else(|| {
                        self.error_at(
                            t.at,
                            format!(
                                "{:?} is no stage: {}",
                                t.text,
                                crate::dataplane::CHAIN_POINTS
                                    .iter()
                                    .map(|s| s.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
                Ok(Expr::Test(Test::eq(Field::Stage, stage.slot())))
            }
            "fn-drop" => Ok(Expr::Test(Test::range(Field::FnDrop, 1, u32::MAX))),
            "geneve" => Ok(Expr::Test(Test::eq(Field::Geneve, 1))),
            "less" | "greater" => {
                let t = self.value("a length")?;
                let n = self.number(&t, "a length")?;
                Ok(Expr::Test(if word == "less" {
                    Test::range(Field::Len, 0, n)
                } else {
                    Test::range(Field::Len, n, u32::MAX)
                }))
            }
            "len" => {
                let op = self.value("a comparison (<, <=, >, >=, =, !=) after len")?;
                let t = self.value("a length")?;
                let n = self.number(&t, "a length")?;
                let test = |lo, hi| Expr::Test(Test::range(Field::Len, lo, hi));
                Ok(match op.text.as_str() {
                    "<" if n == 0 => Expr::Not(Box::new(Expr::All)),
                    "<" => test(0, n - 1),
                    "<=" => test(0, n),
                    ">" if n == u32::MAX => Expr::Not(Box::new(Expr::All)),
                    ">" => test(n + 1, u32::MAX),
                    ">=" => test(n, u32::MAX),
                    "=" | "==" => test(n, n),
                    "!=" => Expr::Not(Box::new(test(n, n))),
                    other => {
                        return Err(self.error_at(
                            op.at,
                            format!("{other:?} is not a comparison: <, <=, >, >=, = or !="),
                        ));
                    }
                })
            }
            "tcp-flags" | "tcpflags" => {
                let t = self.value("flags (syn,ack,...) after tcp-flags")?;
                let mut mask = 0u32;
                for flag in t.text.split(',') {
                    mask |= match flag {
                        "fin" => 0x01,
                        "syn" => 0x02,
                        "rst" => 0x04,
                        "psh" => 0x08,
                        "ack" => 0x10,
                        "urg" => 0x20,
                        other => {
                            return Err(self.error_at(
                                t.at,
                                format!(
                                    "{other:?} is not a TCP flag: fin, syn, rst, psh, ack, urg"
                                ),
                            ));
                        }
                    };
                }
                // Every flag named is set (the TCP flags of a packet that is not TCP are 0).
                Ok(Expr::and(
                    Expr::Test(Test::eq(Field::InnerProto, 6)),
                    Expr::Test(Test {
                        field: Field::TcpFlags,
                        mask,
                        lo: mask,
                        hi: mask,
                    }),
                ))
            }
            "icmp-type" => {
                let t = self.value("an ICMP type after icmp-type")?;
                let n = self.number(&t, "an ICMP type")?;
                if n > 255 {
                    return Err(self.error_at(t.at, format!("{n} is not an ICMP type (0 to 255)")));
                }
                Ok(Expr::Test(Test::eq(Field::IcmpType, n + 1)))
            }
            _ => Err(self.error_at(
                at,
                format!("{word:?} is not a filter primitive: {PRIMITIVES}"),
            )),
        }
    }

    fn number(&self, t: &Token, what: &str) -> Result<u32, FilterError> {
        t.text
            .parse()
            .map_err(|_| self.error_at(t.at, format!("{:?} is not {what}", t.text)))
    }

    fn port_range(&self, t: &Token) -> Result<(u32, u32), FilterError> {
        let port = |s: &str| -> Result<u32, FilterError> {
            s.parse::<u16>()
                .map(u32::from)
                .map_err(|_| self.error_at(t.at, format!("{s:?} is not a port (0 to 65535)")))
        };
        match t.text.split_once('-') {
            Some((a, b)) => {
                let (lo, hi) = (port(a)?, port(b)?);
                if lo > hi {
                    return Err(self.error_at(
                        t.at,
                        format!("the range {} runs backwards: write {hi}-{lo}", t.text),
                    ));
                }
                Ok((lo, hi))
            }
            None => {
                let p = port(&t.text)?;
                Ok((p, p))
            }
        }
    }

    fn protocol(&self, t: &Token) -> Result<u32, FilterError> {
        match t.text.parse::<mizar_db::AclProto>() {
            Ok(p) => p.0.map(u32::from).ok_or_else(|| {
                self.error_at(t.at, "proto any filters nothing: leave it out".to_owned())
            }),
            Err(e) => Err(self.error_at(t.at, e.to_string())),
        }
    }
}

fn either_side(src: Field, dst: Field, make: impl Fn(Field) -> Test) -> Expr {
    Expr::or(Expr::Test(make(src)), Expr::Test(make(dst)))
}

/// A compiled filter: the tests the kernel runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    pub tests: Vec<abi::mz_tap_test>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Accept,
    Reject,
    /// A test, by its place counted from the program's end.
    Node(usize),
}

impl CompiledFilter {
    /// Compiles a resolved expression (short-circuit: each test jumps forward to the next
    /// test that decides, or to accept/reject).
    pub fn compile(expr: &Expr) -> Result<CompiledFilter, String> {
        // Tests are emitted last first, so that every jump is to one emitted earlier.
        let mut reversed: Vec<(Test, Target, Target)> = Vec::new();
        let entry = emit(expr, Target::Accept, Target::Reject, &mut reversed)?;
        let max = abi::MZ_TAP_FILTER_TESTS as usize;
        if reversed.len() > max {
            return Err(format!(
                "the filter compiles to {} tests; at most {max} fit: simplify it (a net \
                 instead of several hosts, a port range instead of several ports)",
                reversed.len()
            ));
        }
        let n = reversed.len();
        let place = |t: Target| -> u8 {
            match t {
                Target::Accept => abi::MZ_TAP_ACCEPT as u8,
                Target::Reject => abi::MZ_TAP_REJECT as u8,
                Target::Node(rev) => (n - 1 - rev) as u8,
            }
        };
        let raw = |t: &Test, on_match: u8, on_miss: u8| abi::mz_tap_test {
            field: t.field.index(),
            on_match,
            on_miss,
            pad: 0,
            mask: t.mask,
            lo: t.lo,
            hi: t.hi,
        };
        match entry {
            Target::Accept => Ok(CompiledFilter { tests: Vec::new() }),
            // Nothing matches: one test that never holds.
            Target::Reject => Ok(CompiledFilter {
                tests: vec![raw(
                    &Test::range(Field::Vni, 1, 0),
                    abi::MZ_TAP_REJECT as u8,
                    abi::MZ_TAP_REJECT as u8,
                )],
            }),
            Target::Node(rev) => {
                debug_assert_eq!(rev, n - 1, "the entry is the last test emitted");
                Ok(CompiledFilter {
                    tests: reversed
                        .iter()
                        .rev()
                        .map(|(t, m, f)| raw(t, place(*m), place(*f)))
                        .collect(),
                })
            }
        }
    }

    /// Runs the program as the kernel does (tap.h, tap_accepts).
    pub fn accepts(&self, fields: &Fields) -> bool {
        if self.tests.is_empty() {
            return true;
        }
        let mut pc = 0usize;
        for _ in 0..abi::MZ_TAP_FILTER_TESTS {
            let Some(t) = self.tests.get(pc) else { break };
            let v = fields.0[(t.field as u32 & (abi::MZ_TAP_FIELDS - 1)) as usize] & t.mask;
            pc = usize::from(if (t.lo..=t.hi).contains(&v) {
                t.on_match
            } else {
                t.on_miss
            });
        }
        pc == abi::MZ_TAP_ACCEPT as usize
    }

    /// What the tests read beyond what a tap point knows (MZ_TAP_NEEDS_*): the kernel reads a
    /// packet's headers only for a filter that tests them.
    pub fn needs(&self) -> u32 {
        let known = [
            Field::Verdict,
            Field::Reason,
            Field::Stage,
            Field::FnDrop,
            Field::Len,
            Field::Ifindex,
        ]
        .map(Field::index);
        self.tests.iter().fold(0, |needs, t| {
            if t.field == Field::Vni.index() {
                needs | abi::MZ_TAP_NEEDS_VNI
            } else if known.contains(&t.field) {
                needs
            } else {
                needs | abi::MZ_TAP_NEEDS_FRAME
            }
        })
    }

    /// The kernel's filter value.
    pub fn to_raw(&self, snaplen: u32, sample_every: u32) -> abi::mz_tap_filter {
        let mut raw = abi::mz_tap_filter {
            active: 1,
            snaplen,
            sample_every,
            len: self.tests.len() as u32,
            needs: self.needs(),
            ..abi::mz_tap_filter::default()
        };
        raw.tests[..self.tests.len()].copy_from_slice(&self.tests);
        raw
    }
}

fn emit(
    expr: &Expr,
    on_true: Target,
    on_false: Target,
    out: &mut Vec<(Test, Target, Target)>,
) -> Result<Target, String> {
    Ok(match expr {
        Expr::All => on_true,
        Expr::Test(t) => {
            out.push((*t, on_true, on_false));
            Target::Node(out.len() - 1)
        }
        Expr::Vpc(name) | Expr::Endpoint(name) => {
            return Err(format!(
                "{name:?} is not resolved (a bug: resolve names first)"
            ));
        }
        Expr::Not(e) => emit(e, on_false, on_true, out)?,
        Expr::And(a, b) => {
            let b = emit(b, on_true, on_false, out)?;
            emit(a, b, on_false, out)?
        }
        Expr::Or(a, b) => {
            let b = emit(b, on_true, on_false, out)?;
            emit(a, on_true, b, out)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names;
    impl NameResolver for Names {
        fn vpc(&self, name: &str) -> Result<u32, String> {
            match name {
                "blue" => Ok(100),
                _ => Err(format!("no VPC {name:?}")),
            }
        }
        fn endpoint(&self, name: &str) -> Result<(u32, Ipv4Addr), String> {
            match name {
                "blue/web" => Ok((100, Ipv4Addr::new(10, 0, 0, 5))),
                _ => Err(format!("no endpoint {name:?}")),
            }
        }
    }

    fn program(text: &str) -> CompiledFilter {
        CompiledFilter::compile(&parse(text).unwrap().resolve(&Names).unwrap()).unwrap()
    }

    fn fields(pairs: &[(Field, u32)]) -> Fields {
        let mut f = Fields::default();
        for (k, v) in pairs {
            f.set(*k, *v);
        }
        f
    }

    #[test]
    fn expressions_match_what_tcpdump_users_expect() {
        let web = fields(&[
            (Field::Vni, 100),
            (Field::Verdict, 1),
            (Field::InnerSrc, u32::from(Ipv4Addr::new(10, 0, 0, 9))),
            (Field::InnerDst, u32::from(Ipv4Addr::new(10, 0, 0, 5))),
            (Field::InnerProto, 6),
            (Field::InnerDport, 80),
            (Field::OuterSrc, u32::from(Ipv4Addr::new(192, 168, 1, 2))),
            (Field::OuterProto, 17),
            (Field::OuterDport, 6081),
            (Field::Geneve, 1),
            (Field::Len, 120),
        ]);
        for (text, wanted) in [
            ("", true),
            ("host 10.0.0.5", true),
            ("src host 10.0.0.5", false),
            ("dst host 10.0.0.5 and tcp and port 80", true),
            ("vpc blue and drop", true),
            ("vpc blue and not drop", false),
            ("ep blue/web", true),
            ("net 10.0.0.0/24 && !udp", true),
            (
                "outer host 192.168.1.2 and outer udp and outer dst port 6081",
                true,
            ),
            ("outer tcp", false),
            ("port 1-79 or port 81-100", false),
            ("portrange 80-90", true),
            (
                "(vni 7 or vni 100) and geneve and len >= 100 and less 200",
                true,
            ),
            ("len > 120", false),
            ("len != 120", false),
            ("not (tcp or udp)", false),
            ("reason deliver_local", false),
            ("fn-drop", false),
        ] {
            assert_eq!(program(text).accepts(&web), wanted, "{text}");
            assert_eq!(
                parse(text).unwrap().resolve(&Names).unwrap().matches(&web),
                wanted,
                "{text} (reference)"
            );
        }
    }

    #[test]
    fn the_kernel_reads_headers_only_for_filters_that_test_them() {
        for (text, needs) in [
            ("", 0),
            ("drop and reason deliver_local", 0),
            ("len > 100", 0),
            ("vpc blue", abi::MZ_TAP_NEEDS_VNI),
            ("drop or host 10.0.0.1", abi::MZ_TAP_NEEDS_FRAME),
            (
                "vni 7 and outer udp",
                abi::MZ_TAP_NEEDS_VNI | abi::MZ_TAP_NEEDS_FRAME,
            ),
        ] {
            assert_eq!(program(text).needs(), needs, "{text}");
        }
    }

    #[test]
    fn bad_expressions_say_where_and_why() {
        for (text, at, wanted) in [
            ("hots 10.0.0.1", 0, "not a filter primitive"),
            ("host 10.0.0.300", 5, "not an IPv4 address"),
            ("tcp and", 7, "ends where a primitive was expected"),
            ("(tcp or udp", 11, "never closed"),
            ("tcp udp", 4, "join it with and/or"),
            ("port 90-80", 5, "runs backwards"),
            ("src tcp", 0, "src qualifies host, net or port"),
            ("outer vni 5", 0, "outer qualifies"),
            ("verdict maybe", 8, "not a verdict"),
            ("reason nope", 7, "is no reason"),
            ("vni 0", 4, "not a VNI"),
            ("net 10.0.0.1/33", 4, "not a CIDR"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.at, at, "{text}: {err}");
            assert!(err.to_string().contains(wanted), "{text}: {err}");
        }
        let err = parse("vpc red").unwrap().resolve(&Names).unwrap_err();
        assert!(err.contains("no VPC"), "{err}");
        let many = (0..40)
            .map(|i| format!("host 10.0.0.{i}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let err = CompiledFilter::compile(&parse(&many).unwrap()).unwrap_err();
        assert!(err.contains("at most 32 fit"), "{err}");
    }

    /// Random expressions over random packets: the compiled program (as the kernel runs it)
    /// decides as the expression does, and every jump goes forward.
    #[test]
    fn compiled_programs_decide_as_their_expressions() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        fn random_expr(next: &mut dyn FnMut() -> u64, depth: u32) -> Expr {
            let pick = next() % if depth == 0 { 1 } else { 4 };
            match pick {
                0 => {
                    let field = Field::ALL[(next() % 4) as usize + 13];
                    let lo = (next() % 8) as u32;
                    Expr::Test(Test::range(field, lo, lo + (next() % 3) as u32))
                }
                1 => Expr::Not(Box::new(random_expr(next, depth - 1))),
                2 => Expr::And(
                    Box::new(random_expr(next, depth - 1)),
                    Box::new(random_expr(next, depth - 1)),
                ),
                _ => Expr::Or(
                    Box::new(random_expr(next, depth - 1)),
                    Box::new(random_expr(next, depth - 1)),
                ),
            }
        }
        let mut checked = 0;
        for _ in 0..2000 {
            let expr = random_expr(&mut next, 4);
            let Ok(program) = CompiledFilter::compile(&expr) else {
                continue;
            };
            for (i, t) in program.tests.iter().enumerate() {
                for j in [t.on_match, t.on_miss] {
                    assert!(usize::from(j) > i, "a jump back in {program:?}");
                }
            }
            for _ in 0..20 {
                let mut f = Fields::default();
                for field in [
                    Field::InnerSrc,
                    Field::InnerDst,
                    Field::InnerProto,
                    Field::InnerSport,
                ] {
                    f.set(field, (next() % 10) as u32);
                }
                assert_eq!(program.accepts(&f), expr.matches(&f), "{expr:?}");
                checked += 1;
            }
        }
        assert!(checked > 10_000, "{checked}");
    }
}
