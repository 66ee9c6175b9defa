//! The fabric as a tree: VPCs → networks → endpoints, and the hosts with the role each plays.

use std::{collections::BTreeSet, sync::Arc};

use mizar_db::Topology;
use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent},
    layout::Rect,
    text::{Line, Span},
    widgets::{Block, Paragraph},
};

use super::{Cursor, View, move_cursor};
use crate::app::{Action, Context};

/// A node of the tree, by position in the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Vpc(usize),
    Network(usize, usize),
    Endpoint(usize, usize, usize),
    Hosts,
    Host(usize),
}

#[derive(Debug, Default)]
pub struct TopologyView {
    cursor: Cursor,
    /// Keys of expanded nodes ("vpc/blue", "net/blue/web", "hosts"), kept by name so a new
    /// sample keeps what was open.
    expanded: BTreeSet<String>,
    /// Per host, the roles line, for the topology it was computed from.
    roles: Option<(Arc<Topology>, Vec<String>)>,
    page: usize,
}

fn key(topology: &Topology, node: Node) -> Option<String> {
    Some(match node {
        Node::Vpc(v) => format!("vpc/{}", topology.vpcs[v].name),
        Node::Network(v, n) => {
            let vpc = &topology.vpcs[v];
            format!("net/{}/{}", vpc.name, vpc.networks[n].name)
        }
        Node::Hosts => "hosts".into(),
        Node::Endpoint(..) | Node::Host(_) => return None,
    })
}

/// "1 network", "3 networks".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl TopologyView {
    /// The nodes shown, in order: children of expanded nodes only.
    fn visible(&self, topology: &Topology) -> Vec<(usize, Node)> {
        let open = |node| key(topology, node).is_some_and(|k| self.expanded.contains(&k));
        let mut nodes = Vec::new();
        for (v, vpc) in topology.vpcs.iter().enumerate() {
            nodes.push((0, Node::Vpc(v)));
            if !open(Node::Vpc(v)) {
                continue;
            }
            for (n, net) in vpc.networks.iter().enumerate() {
                nodes.push((1, Node::Network(v, n)));
                if open(Node::Network(v, n)) {
                    nodes.extend((0..net.endpoints.len()).map(|e| (2, Node::Endpoint(v, n, e))));
                }
            }
        }
        nodes.push((0, Node::Hosts));
        if open(Node::Hosts) {
            nodes.extend((0..topology.hosts.len()).map(|h| (1, Node::Host(h))));
        }
        nodes
    }

    fn roles<'a>(&'a mut self, topology: &Arc<Topology>) -> &'a [String] {
        let fresh = self
            .roles
            .as_ref()
            .is_some_and(|(t, _)| Arc::ptr_eq(t, topology));
        if !fresh {
            let lines = topology
                .hosts
                .iter()
                .map(|h| {
                    let r = topology.roles(&h.name);
                    let mut parts = Vec::new();
                    if !r.divider_of.is_empty() {
                        parts.push(format!("divides {}", r.divider_of.join(", ")));
                    }
                    if !r.bouncer_of.is_empty() {
                        let nets: Vec<String> = r
                            .bouncer_of
                            .iter()
                            .map(|(v, n)| format!("{v}/{n}"))
                            .collect();
                        parts.push(format!("bounces {}", nets.join(", ")));
                    }
                    if !r.endpoints.is_empty() {
                        parts.push(format!("hosts {}", count(r.endpoints.len(), "endpoint")));
                    }
                    if parts.is_empty() {
                        "no role yet".to_owned()
                    } else {
                        parts.join(" · ")
                    }
                })
                .collect();
            self.roles = Some((topology.clone(), lines));
        }
        &self.roles.as_ref().expect("just set").1
    }
}

impl View for TopologyView {
    fn title(&self) -> &'static str {
        "Topology"
    }

    fn keys(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("↑↓ / j k", "move"),
            ("PgUp PgDn g G", "page, first, last"),
            ("Enter / Space / →", "open or close the node"),
            ("←", "close the node (or go to its parent)"),
            ("c", "close everything"),
            (
                "e",
                "change the selected VPC, network, endpoint or host (its form, filled in)",
            ),
        ]
    }

    fn handle_key(&mut self, key_event: KeyEvent, cx: &Context) -> Option<Action> {
        let sample = cx.model.latest()?;
        let topology = &sample.topology;
        let visible = self.visible(topology);
        if move_cursor(&mut self.cursor, key_event, visible.len(), self.page) {
            return None;
        }
        let &(depth, node) = visible.get(self.cursor.selected)?;
        match key_event.code {
            KeyCode::Enter | KeyCode::Char(' ') | KeyCode::Right => {
                if let Some(k) = key(topology, node)
                    && !self.expanded.remove(&k)
                {
                    self.expanded.insert(k);
                }
            }
            KeyCode::Left => {
                let open = key(topology, node).filter(|k| self.expanded.contains(k));
                match open {
                    Some(k) => {
                        self.expanded.remove(&k);
                    }
                    None if depth > 0 => {
                        // To the parent: the nearest row above with a smaller depth.
                        if let Some(p) = visible[..self.cursor.selected]
                            .iter()
                            .rposition(|(d, _)| *d < depth)
                        {
                            self.cursor.selected = p;
                        }
                    }
                    None => {}
                }
            }
            KeyCode::Char('c') => {
                self.expanded.clear();
                self.cursor = Cursor::default();
            }
            KeyCode::Char('e') => {
                let (form, keys) = match node {
                    Node::Vpc(v) => ("change VPC", vec![topology.vpcs[v].name.clone()]),
                    Node::Network(v, n) => {
                        let vpc = &topology.vpcs[v];
                        let keys = vec![vpc.name.clone(), vpc.networks[n].name.clone()];
                        ("change network", keys)
                    }
                    Node::Endpoint(v, n, e) => {
                        let vpc = &topology.vpcs[v];
                        let ep = &vpc.networks[n].endpoints[e];
                        ("change endpoint", vec![vpc.name.clone(), ep.name.clone()])
                    }
                    Node::Host(h) => ("change host", vec![topology.hosts[h].name.clone()]),
                    Node::Hosts => return None,
                };
                return Some(Action::Edit { form, keys });
            }
            _ => {}
        }
        None
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, cx: &Context) {
        let t = cx.theme;
        let block = Block::bordered().title(Span::styled(" topology ", t.title()));
        let Some(sample) = cx.model.latest().cloned() else {
            frame.render_widget(Paragraph::new("no sample yet").block(block), area);
            return;
        };
        let topology = &sample.topology;
        let visible = self.visible(topology);
        let height = area.height.saturating_sub(2) as usize;
        self.page = height;
        let window = self.cursor.window(visible.len(), height);
        let this_host = topology.this_host.clone();
        let roles = self.roles(topology).to_vec();
        let marker = |node: Node, has_children: bool| {
            if !has_children {
                "  "
            } else if key(topology, node).is_some_and(|k| self.expanded.contains(&k)) {
                "▾ "
            } else {
                "▸ "
            }
        };
        let mut lines = Vec::new();
        for (i, (depth, node)) in visible[window.clone()].iter().enumerate() {
            let indent = "  ".repeat(*depth);
            let mut spans = vec![Span::raw(indent)];
            match *node {
                Node::Vpc(v) => {
                    let vpc = &topology.vpcs[v];
                    spans.push(Span::raw(marker(*node, !vpc.networks.is_empty())));
                    spans.push(Span::styled(vpc.name.clone(), t.title()));
                    let dividers = if vpc.dividers.is_empty() {
                        "no divider".to_owned()
                    } else {
                        format!("dividers: {}", vpc.dividers.join(", "))
                    };
                    spans.push(Span::raw(format!(
                        "  VPC, VNI {}  {}  {}  {dividers}",
                        vpc.vni,
                        vpc.cidr,
                        count(vpc.networks.len(), "network")
                    )));
                }
                Node::Network(v, n) => {
                    let net = &topology.vpcs[v].networks[n];
                    spans.push(Span::raw(marker(*node, !net.endpoints.is_empty())));
                    spans.push(Span::styled(net.name.clone(), t.header()));
                    let bouncers = if net.bouncers.is_empty() {
                        "no bouncer".to_owned()
                    } else {
                        format!("bouncers: {}", net.bouncers.join(", "))
                    };
                    spans.push(Span::raw(format!(
                        "  network {}  gateway {}  {bouncers}  {}",
                        net.cidr,
                        net.gateway(),
                        count(net.endpoints.len(), "endpoint")
                    )));
                }
                Node::Endpoint(v, n, e) => {
                    let ep = &topology.vpcs[v].networks[n].endpoints[e];
                    spans.push(Span::raw("  "));
                    spans.push(Span::raw(format!(
                        "{}  {}  {}  {}{}  on {}{}",
                        ep.name,
                        ep.ip,
                        ep.mac,
                        ep.kind.as_str(),
                        if ep.bypass_decap { " bypass-decap" } else { "" },
                        ep.host,
                        ep.veth
                            .as_ref()
                            .map(|v| format!(" via {v}"))
                            .unwrap_or_default()
                    )));
                }
                Node::Hosts => {
                    spans.push(Span::raw(marker(*node, !topology.hosts.is_empty())));
                    spans.push(Span::styled(
                        format!("hosts ({})", topology.hosts.len()),
                        t.title(),
                    ));
                }
                Node::Host(h) => {
                    let host = &topology.hosts[h];
                    spans.push(Span::raw("  "));
                    spans.push(Span::styled(host.name.clone(), t.header()));
                    spans.push(Span::raw(format!(
                        "  {}  {}",
                        host.ip,
                        host.interface.as_deref().unwrap_or("")
                    )));
                    if this_host.as_deref() == Some(host.name.as_str()) {
                        spans.push(Span::styled("  (this host)", t.good()));
                    }
                    spans.push(Span::raw(format!("  {}", roles[h])));
                }
            }
            let mut line = Line::from(spans);
            if window.start + i == self.cursor.selected {
                line = line.style(t.selected());
            }
            lines.push(line);
        }
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }
}
