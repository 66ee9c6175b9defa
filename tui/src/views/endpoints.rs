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
    model::{EndpointRow, EndpointTable, Model, si},
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

    /// Whether the order by this column changes with every sample.
    fn counted(self) -> bool {
        matches!(self, Self::RxRate | Self::TxRate | Self::Rx | Self::Tx)
    }

    /// The order of two rows by this column (not a counted one: those sort by [`Self::key`]).
    fn compare(self, ea: &EndpointRow, eb: &EndpointRow) -> Ordering {
        match self {
            Self::Vpc => ea.vpc.cmp(&eb.vpc),
            Self::Network => ea.network.cmp(&eb.network),
            Self::Name => ea.name.cmp(&eb.name),
            Self::Ip => ea.ip.cmp(&eb.ip),
            Self::Mac => ea.mac.cmp(&eb.mac),
            Self::Kind => ea.kind_label().cmp(&eb.kind_label()),
            Self::Host => ea.host.cmp(&eb.host),
            Self::Veth => ea.veth.cmp(&eb.veth),
            Self::RxRate | Self::TxRate | Self::Rx | Self::Tx => Ordering::Equal,
        }
    }

    /// A counted column's value for each row (-1 for rows without counters, so they sort
    /// first ascending). Only endpoints hosted here have one, so this costs what they number.
    fn keys(self, rows: usize, model: &Model) -> Vec<f64> {
        let mut keys = vec![-1.0; rows];
        let latest = model.latest().map(|s| s.counters.as_slice()).unwrap_or(&[]);
        for c in latest {
            let value = match self {
                Self::RxRate => model.endpoint_rate(c.row).map(|(r, _)| r.packets),
                Self::TxRate => model.endpoint_rate(c.row).map(|(_, t)| t.packets),
                Self::Rx => Some(c.rx.packets as f64),
                Self::Tx => Some(c.tx.packets as f64),
                _ => None,
            };
            if let (Some(v), Some(k)) = (value, keys.get_mut(c.row)) {
                *k = v;
            }
        }
        keys
    }
}

/// The rows shown: indices into the sample's endpoints, filtered and sorted; rebuilt only when
/// the sample, the sort or the filter changes.
#[derive(Debug, Default)]
struct Shown {
    source: Option<Arc<EndpointTable>>,
    sort: Column,
    descending: bool,
    filter: String,
    /// The sample the order was made for, when it depends on counters.
    sample: u64,
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

impl EndpointsView {
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
            && self.shown.filter == self.filter
            && (!self.sort.counted() || self.shown.sample == model.samples());
        if same {
            return;
        }
        let endpoints = &sample.endpoints;
        let needle = self.filter.to_lowercase();
        let filtered = endpoints.matching(&needle);
        let sort = self.sort;
        let descending = self.descending;
        let order = |o: Ordering| if descending { o.reverse() } else { o };
        // Stable sorts of rows in name order: ties keep that order.
        let rows = if sort.counted() {
            let keys = sort.keys(endpoints.len(), model);
            let (mut counted, rest): (Vec<usize>, Vec<usize>) =
                filtered.partition(|i| keys[*i] >= 0.0);
            counted.sort_by(|a, b| order(keys[*a].total_cmp(&keys[*b])));
            if descending {
                counted.into_iter().chain(rest).collect()
            } else {
                rest.into_iter().chain(counted).collect()
            }
        } else {
            let mut rows: Vec<usize> = filtered.collect();
            rows.sort_by(|a, b| order(sort.compare(&endpoints[*a], &endpoints[*b])));
            rows
        };
        self.shown = Shown {
            source: Some(endpoints.clone()),
            sort: self.sort,
            descending: self.descending,
            filter: self.filter.clone(),
            sample: model.samples(),
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
            ("e", "change the selected endpoint (its form, filled in)"),
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
            KeyCode::Char('e') => {
                let row = self.shown.rows.get(self.cursor.selected)?;
                let ep = &cx.model.latest()?.endpoints[*row];
                return Some(Action::Edit {
                    form: "change endpoint",
                    keys: vec![ep.vpc.clone(), ep.name.clone()],
                });
            }
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
                    let counts = cx.model.endpoint_counts(*index);
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
                            Column::Rx => count(counts.map(|c| c.0)),
                            Column::Tx => count(counts.map(|c| c.1)),
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
