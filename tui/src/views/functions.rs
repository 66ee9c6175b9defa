//! The functions: each stage's chain on this host, in the order a packet meets them, with each
//! function's packets/s, drops/s, ns/packet and the decisions it changed; the operator adds, removes and reorders them
//! here, through the same change path as `mizar chain`, and sees the effect at the next sample.

use mizar_db::{BUILTIN_FUNCTIONS, ChainEdit, Request};
use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent},
    layout::{Constraint, Layout, Rect},
    style::Style,
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Table},
};

use super::{Cursor, View, move_cursor};
use crate::{
    app::{Action, Context},
    model::{FunctionSample, Sample, Series, si},
};

/// Transit's stages in the order the pipeline reaches them (as the Pipeline view lists them),
/// then the egress program's.
const STAGE_ORDER: [&str; 6] = [
    "ON_XDP_PASS",
    "ON_XDP_REDIRECT",
    "ON_XDP_TX",
    "ON_XDP_SCALED_EP",
    "ON_XDP_DROP",
    "ON_EGRESS",
];

#[derive(Debug, Default)]
pub struct FunctionsView {
    cursor: Cursor,
    /// A removal waiting for y.
    confirm: Option<Request>,
    /// `a` was pressed: the next key picks the function to add.
    adding: bool,
}

/// One row: a stage heading, or a function of its chain.
enum FnRow<'a> {
    Stage(&'static str, usize),
    Function(&'a FunctionSample),
}

fn rows(sample: Option<&Sample>) -> Vec<FnRow<'_>> {
    let functions: &[FunctionSample] = sample
        .and_then(|s| s.dataplane.as_ref())
        .map(|d| d.functions.as_slice())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for stage in STAGE_ORDER {
        let chain: Vec<&FunctionSample> = functions
            .iter()
            .filter(|f| f.stage == stage && f.scope == "host")
            .collect();
        rows.push(FnRow::Stage(stage, chain.len()));
        rows.extend(chain.into_iter().map(FnRow::Function));
        // Then the chains of VPCs and endpoints there, in the order a packet meets them.
        rows.extend(
            functions
                .iter()
                .filter(|f| f.stage == stage && f.scope != "host")
                .map(FnRow::Function),
        );
    }
    rows
}

impl FunctionsView {
    /// The change a key asks for on the selected row (`add`: the function `a` chose).
    fn request(&self, key: KeyCode, rows: &[FnRow<'_>], add: Option<&str>) -> Option<Request> {
        let row = rows.get(self.cursor.selected)?;
        let enabled = matches!(row, FnRow::Function(f) if f.enabled);
        let (stage, position, len) = match row {
            FnRow::Stage(stage, len) => (*stage, None, *len),
            // A VPC's or endpoint's chain: changed with its form in Manage, or mizar chain --vpc.
            FnRow::Function(f) if f.scope != "host" => return None,
            FnRow::Function(f) => {
                let len = rows
                    .iter()
                    .filter(|r| {
                        matches!(r, FnRow::Function(g) if g.stage == f.stage && g.scope == "host")
                    })
                    .count();
                (
                    STAGE_ORDER
                        .iter()
                        .find(|s| **s == f.stage)
                        .copied()
                        .unwrap_or("ON_XDP_PASS"),
                    Some(f.position),
                    len,
                )
            }
        };
        let edit = match (key, position) {
            // After the selected function, or at the end of the selected stage's chain.
            _ if add.is_some() => ChainEdit::Add {
                function: add?.to_owned(),
                at: position.map(|p| p + 1),
            },
            (KeyCode::Char('x'), Some(p)) => ChainEdit::Remove { position: p },
            (KeyCode::Char('d'), Some(p)) => ChainEdit::Enable {
                position: p,
                enabled: !enabled,
            },
            (KeyCode::Char('K'), Some(p)) if p > 1 => ChainEdit::Move { from: p, to: p - 1 },
            (KeyCode::Char('J'), Some(p)) if p < len => ChainEdit::Move { from: p, to: p + 1 },
            _ => return None,
        };
        Some(Request::EditChain {
            host: None,
            stage: stage.to_owned(),
            edit,
        })
    }
}

impl View for FunctionsView {
    fn title(&self) -> &'static str {
        "Functions"
    }

    fn keys(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("↑↓ / j k", "select a stage or a function"),
            ("PgUp PgDn g G", "page, first, last"),
            (
                "a then 1-9",
                "add a function (the hint lists them) after the selected one, or at the end of \
                 the selected stage",
            ),
            ("x", "remove the selected function (asks y first)"),
            (
                "d",
                "disable the selected function (it keeps its place and counters), or enable it",
            ),
            (
                "K / J",
                "move the selected function earlier / later in its chain",
            ),
            ("y / n", "confirm or cancel a removal"),
        ]
    }

    fn takes_text(&self) -> bool {
        self.adding
    }

    fn handle_key(&mut self, key: KeyEvent, cx: &Context) -> Option<Action> {
        if let Some(request) = self.confirm.take() {
            return (key.code == KeyCode::Char('y')).then_some(Action::Change(request));
        }
        let sample = cx.model.latest().map(|s| s.as_ref());
        let rows = rows(sample);
        if std::mem::take(&mut self.adding) {
            let chosen = match key.code {
                KeyCode::Char(c @ '1'..='9') => BUILTIN_FUNCTIONS.get(c as usize - '1' as usize),
                _ => None,
            };
            return self
                .request(key.code, &rows, Some(chosen?))
                .map(Action::Change);
        }
        if key.code == KeyCode::Char('a') {
            self.adding = true;
            return None;
        }
        if move_cursor(&mut self.cursor, key, rows.len(), 10) {
            return None;
        }
        let request = self.request(key.code, &rows, None)?;
        if request.removes() {
            self.confirm = Some(request);
            return None;
        }
        Some(Action::Change(request))
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, cx: &Context) {
        let t = cx.theme;
        let sample = cx.model.latest().map(|s| s.as_ref());
        let rows = rows(sample);
        let [table_area, hint_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
        let height = table_area.height.saturating_sub(3) as usize;
        let visible = self.cursor.window(rows.len(), height);
        let fmt_rate = |v: Option<f64>| v.map(si).unwrap_or_else(|| "-".into());
        let body = rows[visible.clone()].iter().enumerate().map(|(i, row)| {
            let style = if visible.start + i == self.cursor.selected {
                t.selected()
            } else {
                Style::new()
            };
            match row {
                FnRow::Stage(stage, n) => Row::new(vec![
                    Cell::from(Span::styled(*stage, t.header())),
                    Cell::from(Span::styled(
                        match n {
                            0 => "empty".to_owned(),
                            1 => "1 function".to_owned(),
                            n => format!("{n} functions"),
                        },
                        t.dim(),
                    )),
                ])
                .style(style),
                FnRow::Function(f) => {
                    let series = Series::Function(f.stage.clone(), f.instance);
                    let drops = Series::FunctionDrops(f.stage.clone(), f.instance);
                    let drop_rate = cx.model.rate(&drops).map(|r| r.packets);
                    let drops_text = fmt_rate(drop_rate);
                    Row::new(vec![
                        Cell::from(if f.scope == "host" {
                            format!("  {}. ", f.position)
                        } else {
                            format!("  {} {}. ", f.scope, f.position)
                        }),
                        Cell::from(if f.enabled {
                            f.function.clone()
                        } else {
                            format!("{} (off)", f.function)
                        }),
                        Cell::from(format!("#{}", f.instance)),
                        Cell::from(fmt_rate(cx.model.rate(&series).map(|r| r.packets))),
                        if drop_rate.is_some_and(|d| d > 0.0) {
                            Cell::from(Span::styled(drops_text, t.bad()))
                        } else {
                            Cell::from(drops_text)
                        },
                        Cell::from(
                            cx.model
                                .function_ns(f)
                                .map_or("-".to_owned(), |ns| format!("{ns:.1}")),
                        ),
                        Cell::from(f.changed.to_string()),
                        Cell::from(f.packets.to_string()),
                    ])
                    .style(style)
                }
            }
        });
        let header = Row::new(vec![
            "stage", "function", "inst", "pkts/s", "drops/s", "ns/pkt", "changed", "total",
        ])
        .style(t.header());
        let table = Table::new(
            body,
            [
                Constraint::Length(18),
                Constraint::Length(12),
                Constraint::Length(5),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Min(6),
            ],
        )
        .header(header)
        .block(Block::bordered().title(format!(
            " functions: this host's chains ({} placed) ",
            rows.iter().filter(|r| matches!(r, FnRow::Function(_))).count()
        )));
        frame.render_widget(table, table_area);

        let hint = match &self.confirm {
            Some(request) => Line::from(Span::styled(
                format!("{request}? y to confirm, any other key cancels"),
                t.bad(),
            )),
            None if self.adding => Line::from(format!(
                "add which function? {} (any other key cancels)",
                BUILTIN_FUNCTIONS
                    .iter()
                    .enumerate()
                    .map(|(i, f)| format!("{} {f}", i + 1))
                    .collect::<Vec<_>>()
                    .join(" · ")
            )),
            None if sample.and_then(|s| s.dataplane.as_ref()).is_none() => {
                Line::from("the data plane is down: `mizar chain show` lists the store's chains")
            }
            None => Line::from("a add · x remove · d disable/enable · K/J move · ? help"),
        };
        frame.render_widget(Paragraph::new(hint), hint_area);
    }
}
