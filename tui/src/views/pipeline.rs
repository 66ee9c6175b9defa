//! The pipeline: the transit program's entry and its stages, the egress program, and every
//! reason a packet ended with, with rates and history; the selected row's history larger below.

use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent},
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Sparkline, Table},
};

use super::{Cursor, View, move_cursor, spark_text};
use crate::{
    app::{Action, Context},
    model::{Program, ReasonSample, Sample, Series, Verdict, si},
};

/// Transit stages in the order the pipeline reaches them.
const STAGE_ORDER: [&str; 5] = [
    "ON_XDP_PASS",
    "ON_XDP_REDIRECT",
    "ON_XDP_TX",
    "ON_XDP_SCALED_EP",
    "ON_XDP_DROP",
];

#[derive(Debug, Default)]
pub struct PipelineView {
    cursor: Cursor,
    zoom: bool,
}

/// One row of the view: a label, the series it plots, and the series of its drops.
struct PipelineRow {
    label: String,
    series: Series,
    drops: Option<Series>,
    total: Option<u64>,
    description: String,
}

fn stage_rows(sample: Option<&Sample>) -> Vec<PipelineRow> {
    let stage_total = |name: &str| {
        sample
            .and_then(|s| s.dataplane.as_ref())
            .and_then(|d| d.stages.iter().find(|s| s.name == name))
            .map(|s| s.count.packets)
    };
    let program_total = |program: Program| {
        sample.and_then(|s| s.dataplane.as_ref()).map(|d| {
            d.reasons
                .iter()
                .filter(|r| r.program == program)
                .map(|r| r.count.packets)
                .sum()
        })
    };
    let mut rows = vec![PipelineRow {
        label: "transit entry".into(),
        series: Series::Entry(Program::Transit),
        drops: Some(Series::ProgramDrops(Program::Transit)),
        total: program_total(Program::Transit),
        description: "every frame the transit program saw on the underlay".into(),
    }];
    for (i, stage) in STAGE_ORDER.iter().enumerate() {
        let branch = if i + 1 == STAGE_ORDER.len() {
            "└"
        } else {
            "├"
        };
        rows.push(PipelineRow {
            label: format!(" {branch} {stage}"),
            series: Series::Stage((*stage).into()),
            drops: Some(Series::StageDrops((*stage).into())),
            total: stage_total(stage),
            description: stage_description(stage).into(),
        });
    }
    rows.push(PipelineRow {
        label: "egress entry".into(),
        series: Series::Entry(Program::Egress),
        drops: Some(Series::ProgramDrops(Program::Egress)),
        total: program_total(Program::Egress),
        description: "every frame an endpoint sent, on its veth".into(),
    });
    rows
}

fn stage_description(stage: &str) -> &'static str {
    match stage {
        "ON_XDP_PASS" => "not for a VPC: handed to this host's stack",
        "ON_XDP_REDIRECT" => "delivered to an endpoint hosted here",
        "ON_XDP_TX" => "forwarded on the underlay (bouncer, divider)",
        "ON_XDP_SCALED_EP" => "to a scaled endpoint",
        "ON_XDP_DROP" => "dropped, with a reason",
        _ => "",
    }
}

/// Reasons that counted something, in pipeline order.
fn reason_rows(sample: Option<&Sample>) -> Vec<&ReasonSample> {
    let Some(dataplane) = sample.and_then(|s| s.dataplane.as_ref()) else {
        return Vec::new();
    };
    let mut reasons: Vec<&ReasonSample> = dataplane
        .reasons
        .iter()
        .filter(|r| r.count.packets > 0)
        .collect();
    let stage_rank = |r: &ReasonSample| {
        r.stage
            .as_deref()
            .and_then(|s| STAGE_ORDER.iter().position(|x| *x == s))
            .unwrap_or(STAGE_ORDER.len())
    };
    reasons.sort_by(|a, b| {
        (a.program, stage_rank(a), &a.name).cmp(&(b.program, stage_rank(b), &b.name))
    });
    reasons
}

fn where_label(r: &ReasonSample) -> String {
    match (r.program, &r.stage) {
        (Program::Transit, Some(stage)) => stage.clone(),
        (program, _) => format!(
            "{}{}",
            program.name(),
            if r.verdict == Verdict::Drop {
                " drop"
            } else {
                ""
            }
        ),
    }
}

impl View for PipelineView {
    fn title(&self) -> &'static str {
        "Pipeline"
    }

    fn keys(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("↑↓ / j k", "select a stage or a reason"),
            ("PgUp PgDn g G", "page, first, last"),
            (
                "Enter / z",
                "show the selected row's history larger (again: smaller)",
            ),
        ]
    }

    fn handle_key(&mut self, key: KeyEvent, cx: &Context) -> Option<Action> {
        let sample = cx.model.latest().map(|s| s.as_ref());
        let len = stage_rows(sample).len() + reason_rows(sample).len();
        if move_cursor(&mut self.cursor, key, len, 10) {
            return None;
        }
        if matches!(key.code, KeyCode::Enter | KeyCode::Char('z')) {
            self.zoom = !self.zoom;
        }
        None
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, cx: &Context) {
        let t = cx.theme;
        let sample = cx.model.latest().map(|s| s.as_ref());
        let stages = stage_rows(sample);
        let reasons = reason_rows(sample);
        let detail_height = if self.zoom {
            area.height / 2
        } else {
            6.min(area.height / 4).max(4)
        };
        let stage_height = (stages.len() as u16 + 3).min(area.height.saturating_sub(detail_height));
        let [stage_area, reason_area, detail_area] = Layout::vertical([
            Constraint::Length(stage_height),
            Constraint::Min(3),
            Constraint::Length(detail_height),
        ])
        .areas(area);

        let rate = |s: &Series| cx.model.rate(s);
        let fmt_rate = |v: Option<f64>| v.map(si).unwrap_or_else(|| "-".into());
        let selected = self.cursor.selected;

        // Stages.
        let hist_width = stage_area.width.saturating_sub(2 + 20 + 9 * 3 + 11 + 5) as usize;
        let stage_table_rows = stages.iter().enumerate().map(|(i, row)| {
            let r = rate(&row.series);
            let drops = row.drops.as_ref().and_then(rate);
            let style = if i == selected {
                t.selected()
            } else {
                ratatui::style::Style::new()
            };
            let drops_text = fmt_rate(drops.map(|d| d.packets));
            let drops_cell = if drops.is_some_and(|d| d.packets > 0.0) {
                Cell::from(Span::styled(drops_text, t.bad()))
            } else {
                Cell::from(drops_text)
            };
            Row::new(vec![
                Cell::from(row.label.clone()),
                Cell::from(fmt_rate(r.map(|r| r.packets))),
                Cell::from(fmt_rate(r.map(|r| r.bits))),
                drops_cell,
                Cell::from(
                    row.total
                        .map(|v| si(v as f64))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(spark_text(&cx.model.history(&row.series), hist_width)),
            ])
            .style(style)
        });
        let widths = [
            Constraint::Length(20),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Min(4),
        ];
        let header = Row::new(["stage", "pkts/s", "bits/s", "drops/s", "total", "history"])
            .style(t.header());
        frame.render_widget(
            Table::new(stage_table_rows, widths)
                .header(header)
                .block(Block::bordered().title(Line::from(vec![
                    Span::styled(" pipeline ", t.title()),
                    Span::raw(attachments(sample)),
                ]))),
            stage_area,
        );

        // Reasons: a window of the rows, selection continuing from the stages.
        let inner_height = reason_area.height.saturating_sub(3) as usize;
        let mut reason_cursor = Cursor {
            selected: selected.saturating_sub(stages.len()),
            offset: self.cursor.offset,
        };
        let window = reason_cursor.window(reasons.len(), inner_height);
        self.cursor.offset = reason_cursor.offset;
        let reason_table_rows = reasons[window.clone()].iter().enumerate().map(|(i, r)| {
            let series = Series::Reason(r.name.clone());
            let rate = cx.model.rate(&series);
            let index = stages.len() + window.start + i;
            let style = if index == selected {
                t.selected()
            } else if r.verdict == Verdict::Drop {
                t.bad()
            } else {
                ratatui::style::Style::new()
            };
            Row::new(vec![
                Cell::from(r.name.clone()),
                Cell::from(where_label(r)),
                Cell::from(fmt_rate(rate.map(|r| r.packets))),
                Cell::from(si(r.count.packets as f64)),
                Cell::from(r.description.clone()),
            ])
            .style(style)
        });
        let title = if sample.and_then(|s| s.dataplane.as_ref()).is_none() {
            " reasons (data plane down) ".to_owned()
        } else {
            format!(" reasons: {} counted something ", reasons.len())
        };
        frame.render_widget(
            Table::new(
                reason_table_rows,
                [
                    Constraint::Length(26),
                    Constraint::Length(16),
                    Constraint::Length(8),
                    Constraint::Length(8),
                    Constraint::Min(10),
                ],
            )
            .header(
                Row::new(["reason", "where", "pkts/s", "total", "description"]).style(t.header()),
            )
            .block(Block::bordered().title(Span::styled(title, t.title()))),
            reason_area,
        );

        // The selected row's history, larger.
        let (label, series, description) = if selected < stages.len() {
            let row = &stages[selected];
            (
                row.label.trim_start_matches([' ', '├', '└']).to_owned(),
                row.series.clone(),
                row.description.clone(),
            )
        } else if let Some(r) = reasons.get(selected - stages.len()) {
            (
                r.name.clone(),
                Series::Reason(r.name.clone()),
                r.description.clone(),
            )
        } else {
            (
                String::new(),
                Series::Entry(Program::Transit),
                String::new(),
            )
        };
        let history = cx.model.history(&series);
        let peak = history.iter().copied().fold(0.0, f64::max);
        let now = history.last().copied().unwrap_or(0.0);
        let block = Block::bordered().title(Line::from(vec![
            Span::styled(format!(" {label} "), t.title()),
            Span::raw(format!(
                "now {}/s, peak {}/s, {} samples ",
                si(now),
                si(peak),
                history.len()
            )),
        ]));
        let inner = block.inner(detail_area);
        frame.render_widget(block, detail_area);
        let [about, chart] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        frame.render_widget(Paragraph::new(Span::styled(description, t.dim())), about);
        let width = chart.width as usize;
        let data: Vec<u64> = history[history.len().saturating_sub(width)..]
            .iter()
            .map(|v| v.round() as u64)
            .collect();
        frame.render_widget(Sparkline::default().data(&data), chart);
    }
}

/// "transit on ul0 (native) · egress on 3 veths (native)".
fn attachments(sample: Option<&Sample>) -> String {
    let Some(d) = sample.and_then(|s| s.dataplane.as_ref()) else {
        return "(data plane down) ".into();
    };
    let mut parts = Vec::new();
    for a in d.attached.iter().filter(|a| a.role == "transit") {
        parts.push(format!("transit on {} ({})", a.interface, a.mode));
    }
    let egress: Vec<_> = d.attached.iter().filter(|a| a.role == "egress").collect();
    match egress.as_slice() {
        [] => parts.push("no egress".into()),
        [one] => parts.push(format!("egress on {} ({})", one.interface, one.mode)),
        many => {
            let generic = many.iter().filter(|a| a.mode == "generic").count();
            let modes = if generic == 0 {
                "native".to_owned()
            } else {
                format!("{generic} generic")
            };
            parts.push(format!("egress on {} veths ({modes})", many.len()));
        }
    }
    format!("{} ", parts.join(" · "))
}
