//! Every endpoint of the store, with rates and totals for those hosted here: sortable by any
//! column, filtered as you type, and drawn as a window so 100,000 rows stay smooth.

use std::{cmp::Ordering, sync::Arc};

use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent},
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Table},
};

use super::{Cursor, View, move_cursor};
use crate::{
    app::{Action, Context},
    model::{EndpointRow, Model, si},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Column {
    #[default]
    Vpc,
    Network,
    Name,
    Ip,
    Mac,
    Kind,
    Host,
    Veth,
    RxRate,
    TxRate,
    Rx,
    Tx,
}

pub const COLUMNS: [Column; 12] = [
    Column::Vpc,
    Column::Network,
    Column::Name,
    Column::Ip,
    Column::Mac,
    Column::Kind,
    Column::Host,
    Column::Veth,
    Column::RxRate,
    Column::TxRate,
    Column::Rx,
    Column::Tx,
];

/// The columns that fit `width`, most useful first kept: at 80 columns the MAC, the veth and
/// the totals give way to the rates.
pub fn visible_columns(width: u16) -> Vec<Column> {
    COLUMNS
        .into_iter()
        .filter(|c| match c {
            Column::Mac => width >= 140,
            Column::Network | Column::Veth | Column::Tx => width >= 110,
            _ => true,
        })
        .collect()
}

impl Column {
    pub fn heading(self) -> &'static str {
        match self {
            Self::Vpc => "VPC",
            Self::Network => "NETWORK",
            Self::Name => "NAME",
            Self::Ip => "IP",
            Self::Mac => "MAC",
            Self::Kind => "TYPE",
            Self::Host => "HOST",
            Self::Veth => "VETH",
            Self::RxRate => "RX/s",
            Self::TxRate => "TX/s",
            Self::Rx => "RX",
            Self::Tx => "TX",
        }
    }

    fn width(self) -> Constraint {
        match self {
            Self::Ip => Constraint::Length(15),
            Self::Mac => Constraint::Length(17),
            Self::RxRate | Self::TxRate | Self::Rx | Self::Tx => Constraint::Length(7),
            Self::Kind => Constraint::Length(8),
            _ => Constraint::Min(6),
        }
    }

    fn compare(
        self,
        a: (usize, &EndpointRow),
        b: (usize, &EndpointRow),
        model: &Model,
    ) -> Ordering {
        let rate = |i: usize, rx: bool| {
            model
                .endpoint_rate(i)
                .map(|(r, t)| if rx { r.packets } else { t.packets })
        };
        let (ia, ea) = a;
        let (ib, eb) = b;
        let by_rate = |rx| {
            rate(ia, rx)
                .partial_cmp(&rate(ib, rx))
                .unwrap_or(Ordering::Equal)
        };
        match self {
            Self::Vpc => ea.vpc.cmp(&eb.vpc),
            Self::Network => ea.network.cmp(&eb.network),
            Self::Name => ea.name.cmp(&eb.name),
            Self::Ip => ea.ip.cmp(&eb.ip),
            Self::Mac => ea.mac.cmp(&eb.mac),
            Self::Kind => ea.kind_label().cmp(&eb.kind_label()),
            Self::Host => ea.host.cmp(&eb.host),
            Self::Veth => ea.veth.cmp(&eb.veth),
            Self::RxRate => by_rate(true),
            Self::TxRate => by_rate(false),
            Self::Rx => ea.rx.map(|c| c.packets).cmp(&eb.rx.map(|c| c.packets)),
            Self::Tx => ea.tx.map(|c| c.packets).cmp(&eb.tx.map(|c| c.packets)),
        }
        // Ties keep a stable, meaningful order.
        .then_with(|| (&ea.vpc, &ea.name).cmp(&(&eb.vpc, &eb.name)))
    }
}

/// The rows shown: indices into the sample's endpoints, filtered and sorted; rebuilt only when
/// the sample, the sort or the filter changes.
#[derive(Debug, Default)]
struct Shown {
    source: Option<Arc<Vec<EndpointRow>>>,
    sort: Column,
    descending: bool,
    filter: String,
    rows: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct EndpointsView {
    cursor: Cursor,
    sort: Column,
    descending: bool,
    filter: String,
    typing: bool,
    shown: Shown,
    page: usize,
}

fn matches(e: &EndpointRow, needle: &str) -> bool {
    let hit = |s: &str| s.to_lowercase().contains(needle);
    hit(&e.vpc)
        || hit(&e.network)
        || hit(&e.name)
        || e.ip.to_string().contains(needle)
        || e.mac.to_string().contains(needle)
        || hit(&e.host)
        || e.veth.as_deref().is_some_and(hit)
        || hit(&e.kind_label())
}

impl EndpointsView {
    pub fn sort(&self) -> (Column, bool) {
        (self.sort, self.descending)
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The rows as shown (filtered, sorted), for tests and for the management view.
    pub fn shown_rows<'a>(&mut self, model: &'a Model) -> Vec<&'a EndpointRow> {
        self.refresh(model);
        let Some(sample) = model.latest() else {
            return Vec::new();
        };
        self.shown
            .rows
            .iter()
            .map(|i| &sample.endpoints[*i])
            .collect()
    }

    fn refresh(&mut self, model: &Model) {
        let Some(sample) = model.latest() else {
            self.shown = Shown::default();
            return;
        };
        let same = self
            .shown
            .source
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &sample.endpoints))
            && self.shown.sort == self.sort
            && self.shown.descending == self.descending
            && self.shown.filter == self.filter;
        if same {
            return;
        }
        let needle = self.filter.to_lowercase();
        let endpoints = &sample.endpoints;
        let mut rows: Vec<usize> = (0..endpoints.len())
            .filter(|i| needle.is_empty() || matches(&endpoints[*i], &needle))
            .collect();
        let sort = self.sort;
        rows.sort_by(|a, b| {
            let o = sort.compare((*a, &endpoints[*a]), (*b, &endpoints[*b]), model);
            if self.descending { o.reverse() } else { o }
        });
        self.shown = Shown {
            source: Some(endpoints.clone()),
            sort: self.sort,
            descending: self.descending,
            filter: self.filter.clone(),
            rows,
        };
    }

    fn shift_sort(&mut self, delta: isize) {
        let i = COLUMNS.iter().position(|c| *c == self.sort).unwrap_or(0) as isize;
        let n = COLUMNS.len() as isize;
        self.sort = COLUMNS[(i + delta).rem_euclid(n) as usize];
    }
}

impl View for EndpointsView {
    fn title(&self) -> &'static str {
        "Endpoints"
    }

    fn keys(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("↑↓ / j k", "move"),
            ("PgUp PgDn g G", "page, first, last"),
            ("< >", "sort by the previous / next column"),
            ("r", "reverse the sort"),
            ("/", "filter as you type (Enter keeps it, Esc clears it)"),
            ("Esc", "clear the filter"),
        ]
    }

    fn takes_text(&self) -> bool {
        self.typing
    }

    fn handle_key(&mut self, key: KeyEvent, cx: &Context) -> Option<Action> {
        if self.typing {
            match key.code {
                KeyCode::Enter => self.typing = false,
                KeyCode::Esc => {
                    self.typing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.cursor = Cursor::default();
            return None;
        }
        self.refresh(cx.model);
        if move_cursor(&mut self.cursor, key, self.shown.rows.len(), self.page) {
            return None;
        }
        match key.code {
            KeyCode::Char('/') => self.typing = true,
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Char('>') | KeyCode::Right => self.shift_sort(1),
            KeyCode::Char('<') | KeyCode::Left => self.shift_sort(-1),
            KeyCode::Char('r') => self.descending = !self.descending,
            _ => {}
        }
        None
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, cx: &Context) {
        let t = cx.theme;
        self.refresh(cx.model);
        let total = cx.model.latest().map_or(0, |s| s.endpoints.len());
        let [table_area, filter_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
        let height = table_area.height.saturating_sub(3) as usize;
        self.page = height;
        let window = self.cursor.window(self.shown.rows.len(), height);
        let columns = visible_columns(table_area.width);
        let header = Row::new(columns.iter().map(|&c| {
            let mark = match (c == self.sort, self.descending) {
                (false, _) => "",
                (true, false) => "▲",
                (true, true) => "▼",
            };
            Cell::from(format!("{}{mark}", c.heading()))
        }))
        .style(t.header());
        let rows = match cx.model.latest() {
            Some(sample) => self.shown.rows[window.clone()]
                .iter()
                .enumerate()
                .map(|(i, index)| {
                    let e = &sample.endpoints[*index];
                    let rates = cx.model.endpoint_rate(*index);
                    let rate = |v: Option<f64>| v.map(si).unwrap_or_default();
                    let count = |c: Option<crate::model::Count>| {
                        c.map(|c| si(c.packets as f64)).unwrap_or_default()
                    };
                    let row = Row::new(columns.iter().map(|c| {
                        Cell::from(match c {
                            Column::Vpc => e.vpc.clone(),
                            Column::Network => e.network.clone(),
                            Column::Name => e.name.clone(),
                            Column::Ip => e.ip.to_string(),
                            Column::Mac => e.mac.to_string(),
                            Column::Kind => e.kind_label(),
                            Column::Host => e.host.clone(),
                            Column::Veth => e.veth.clone().unwrap_or_default(),
                            Column::RxRate => rate(rates.map(|r| r.0.packets)),
                            Column::TxRate => rate(rates.map(|r| r.1.packets)),
                            Column::Rx => count(e.rx),
                            Column::Tx => count(e.tx),
                        })
                    }));
                    if window.start + i == self.cursor.selected {
                        row.style(t.selected())
                    } else {
                        row
                    }
                })
                .collect::<Vec<_>>(),
            None => Vec::new(),
        };
        let shown = self.shown.rows.len();
        let order = if self.descending {
            "descending"
        } else {
            "ascending"
        };
        let title = if self.filter.is_empty() {
            format!(" endpoints: {total}, by {} {order} ", self.sort.heading())
        } else {
            format!(
                " endpoints: {shown} of {total} match, by {} {order} ",
                self.sort.heading()
            )
        };
        let position = if shown == 0 {
            String::new()
        } else {
            format!(" {}/{shown} ", self.cursor.selected + 1)
        };
        frame.render_widget(
            Table::new(rows, columns.iter().map(|c| c.width()))
                .header(header)
                .column_spacing(1)
                .block(
                    Block::bordered()
                        .title(Span::styled(title, t.title()))
                        .title_bottom(Line::from(position).right_aligned()),
                ),
            table_area,
        );
        let filter_line = if self.typing {
            Line::from(vec![
                Span::styled("/", t.key()),
                Span::raw(self.filter.clone()),
                Span::styled("█", t.dim()),
            ])
        } else if !self.filter.is_empty() {
            Line::from(vec![
                Span::raw(format!("filter: {} ", self.filter)),
                Span::styled("(Esc clears)", t.dim()),
            ])
        } else {
            Line::from(Span::styled(
                "/ filter · < > sort column · r reverse",
                t.dim(),
            ))
        };
        frame.render_widget(Paragraph::new(filter_line), filter_area);
    }
}
