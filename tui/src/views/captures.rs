//! Captures: choose tap points and a filter, start a capture (as `mizar capture` would), watch
//! its count, stop it, see where the file went, and read the last packets it caught, decoded.

use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent},
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Table, Wrap},
};

use super::{Cursor, View, move_cursor};
use crate::{
    app::{Action, Context},
    model::CaptureSample,
    source::CaptureRequest,
};

const LABELS: [(&str, &str); 4] = [
    (
        "points",
        "transit:entry, transit:verdict, egress:entry, egress:verdict, redirect:1:before ...",
    ),
    ("filter", "e.g. vpc blue and icmp (empty: all)"),
    ("count", "empty: until x"),
    ("file", "empty: the state directory's captures/"),
];

#[derive(Debug)]
pub struct CapturesView {
    values: [String; 4],
    field: usize,
    editing: bool,
    error: Option<String>,
    cursor: Cursor,
    /// Keep the newest packet in view until the operator scrolls.
    follow: bool,
}

impl Default for CapturesView {
    fn default() -> Self {
        Self {
            values: [
                "transit:entry,transit:verdict".to_owned(),
                String::new(),
                String::new(),
                String::new(),
            ],
            field: 0,
            editing: false,
            error: None,
            cursor: Cursor::default(),
            follow: true,
        }
    }
}

impl CapturesView {
    /// The request the form says, or what is wrong with it.
    fn request(&self) -> Result<CaptureRequest, String> {
        let points = self.values[0].trim();
        if points.is_empty() {
            return Err("points: name at least one tap point".into());
        }
        let count = match self.values[2].trim() {
            "" => None,
            n => Some(
                n.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("count: {n:?} is not a number of packets above 0"))?,
            ),
        };
        let file = match self.values[3].trim() {
            "" => None,
            f => Some(f.to_owned()),
        };
        Ok(CaptureRequest {
            points: points.to_owned(),
            filter: self.values[1].trim().to_owned(),
            count,
            file,
        })
    }

    fn start(&mut self, cx: &Context) -> Option<Action> {
        if capture(cx).is_some_and(|c| c.running) {
            self.error = Some("a capture is running: x stops it first".into());
            return None;
        }
        match self.request() {
            Ok(r) => {
                self.error = None;
                self.editing = false;
                self.follow = true;
                Some(Action::StartCapture(r))
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

fn capture<'a>(cx: &Context<'a>) -> Option<&'a CaptureSample> {
    cx.model.latest().and_then(|s| s.capture.as_ref())
}

impl View for CapturesView {
    fn title(&self) -> &'static str {
        "Captures"
    }

    fn keys(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("e / Enter", "edit the points, filter, count and file"),
            (
                "Tab ↓ / Shift-Tab ↑",
                "while editing: next / previous field",
            ),
            ("Enter while editing", "start the capture"),
            ("Esc", "stop editing (nothing starts)"),
            ("s", "start the capture as the form says"),
            ("x", "stop the running capture (the file is whole)"),
            (
                "↑↓ / j k, g G",
                "scroll the last packets; G follows the newest",
            ),
        ]
    }

    fn takes_text(&self) -> bool {
        self.editing
    }

    fn handle_key(&mut self, key: KeyEvent, cx: &Context) -> Option<Action> {
        if self.editing {
            match key.code {
                KeyCode::Esc => self.editing = false,
                KeyCode::Enter => return self.start(cx),
                KeyCode::Tab | KeyCode::Down => self.field = (self.field + 1) % LABELS.len(),
                KeyCode::BackTab | KeyCode::Up => {
                    self.field = (self.field + LABELS.len() - 1) % LABELS.len()
                }
                KeyCode::Backspace => {
                    self.values[self.field].pop();
                }
                KeyCode::Char(c) => self.values[self.field].push(c),
                _ => {}
            }
            return None;
        }
        let len = capture(cx).map_or(0, |c| c.last.len());
        if move_cursor(&mut self.cursor, key, len, 10) {
            self.follow = matches!(key.code, KeyCode::End | KeyCode::Char('G'));
            return None;
        }
        match key.code {
            KeyCode::Char('e') | KeyCode::Enter => {
                self.editing = true;
                None
            }
            KeyCode::Char('s') => self.start(cx),
            KeyCode::Char('x') => {
                if capture(cx).is_some_and(|c| c.running) {
                    Some(Action::StopCapture)
                } else {
                    self.error = Some("no capture is running: s starts one".into());
                    None
                }
            }
            _ => None,
        }
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, cx: &Context) {
        let t = cx.theme;
        let [form_area, list_area] =
            Layout::vertical([Constraint::Length(9), Constraint::Min(3)]).areas(area);
        let current = capture(cx);
        let mut lines = Vec::new();
        for (i, (label, hint)) in LABELS.iter().enumerate() {
            let value = &self.values[i];
            let mut spans = vec![Span::styled(format!("{label:>7} "), t.header())];
            if self.editing && self.field == i {
                spans.push(Span::styled(value.clone(), t.selected()));
                spans.push(Span::styled("█", t.dim()));
            } else {
                spans.push(Span::raw(value.clone()));
            }
            if value.is_empty() {
                spans.push(Span::styled(format!("  {hint}"), t.dim()));
            }
            lines.push(Line::from(spans));
        }
        match current {
            None => lines.push(Line::from(Span::styled(
                "no capture yet: s starts one as the form says (e edits it)",
                t.dim(),
            ))),
            Some(c) => {
                let state = if c.running {
                    Span::styled("capturing", t.good())
                } else {
                    Span::styled("ended", t.dim())
                };
                lines.push(Line::from(vec![
                    state,
                    Span::raw(format!(
                        " {:.1} s · {} captured → {}",
                        c.elapsed.as_secs_f64(),
                        c.captured,
                        c.file
                    )),
                ]));
                match &c.ended {
                    Some(Ok(summary)) => lines.push(Line::from(Span::raw(summary.clone()))),
                    Some(Err(e)) => lines.push(Line::from(Span::styled(e.clone(), t.bad()))),
                    None => {}
                }
            }
        }
        if let Some(e) = &self.error {
            lines.push(Line::from(Span::styled(e.clone(), t.bad())));
        }
        let hint = if self.editing {
            " Enter starts · Tab next field · Esc stops editing "
        } else {
            " s start · x stop · e edit "
        };
        frame.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::bordered()
                    .title(Span::styled(" capture ", t.title()))
                    .title_bottom(Span::styled(hint, t.dim())),
            ),
            form_area,
        );

        let packets = current.map(|c| c.last.as_slice()).unwrap_or_default();
        let [table_area, detail_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(6)]).areas(list_area);
        let height = table_area.height.saturating_sub(3) as usize;
        if self.follow {
            self.cursor.end(packets.len());
        }
        let range = self.cursor.window(packets.len(), height);
        // Narrow terminals keep what tells packets apart: where, the verdict, the packet.
        let wide = area.width >= 120;
        let rows: Vec<Row> = packets[range.clone()]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let verdict = p.verdict.clone().unwrap_or_else(|| "-".into());
                let verdict_style = match verdict.as_str() {
                    "drop" | "aborted" => t.bad(),
                    "-" => t.dim(),
                    _ => t.good(),
                };
                let mut cells = vec![
                    Cell::from(format!("{:.6}", p.at.as_secs_f64())),
                    Cell::from(packet_id(p.id)),
                    Cell::from(p.point.clone()),
                    Cell::from(Span::styled(verdict, verdict_style)),
                    Cell::from(p.summary.clone()),
                ];
                if !wide {
                    cells.drain(..2);
                }
                let row = Row::new(cells);
                if range.start + i == self.cursor.selected {
                    row.style(t.selected())
                } else {
                    row
                }
            })
            .collect();
        let (widths, header): (Vec<Constraint>, Vec<&str>) = if wide {
            (
                vec![
                    Constraint::Length(10),
                    Constraint::Length(9),
                    Constraint::Length(32),
                    Constraint::Length(8),
                    Constraint::Min(40),
                ],
                vec!["time s", "id", "point", "verdict", "packet"],
            )
        } else {
            (
                vec![
                    Constraint::Length(24),
                    Constraint::Length(8),
                    Constraint::Min(30),
                ],
                vec!["point", "verdict", "packet"],
            )
        };
        let table = Table::new(rows, widths)
            .header(Row::new(header).style(t.header()))
            .block(Block::bordered().title(Span::styled(
                format!(" last packets ({}) ", packets.len()),
                t.title(),
            )));
        frame.render_widget(table, table_area);
        // The selected packet in full: the list cuts what does not fit.
        let detail = match packets.get(self.cursor.selected) {
            Some(p) => vec![
                Line::from(vec![
                    Span::styled(format!("{} ", packet_id(p.id)), t.header()),
                    Span::raw(p.point.clone()),
                    Span::styled(format!(" {}", p.comment), t.dim()),
                ]),
                Line::from(p.summary.clone()),
            ],
            None => vec![Line::from(Span::styled(
                "no packet yet: a capture lists its last packets here",
                t.dim(),
            ))],
        };
        frame.render_widget(
            Paragraph::new(detail)
                .wrap(Wrap { trim: true })
                .block(Block::bordered().title(Span::styled(" packet ", t.title()))),
            detail_area,
        );
    }
}

/// A packet id as CPU.number: the CPU that took the packet in, and its count there.
fn packet_id(id: u64) -> String {
    format!("{}.{}", id >> 48, id & 0xffff_ffff_ffff)
}
