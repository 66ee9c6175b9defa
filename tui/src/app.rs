//! The application: which view is shown, the help overlay, messages, and the keys every view
//! shares. Views are components (`handle_key` → [`Action`], `draw`); the app owns the model and
//! hands each view a [`Context`] to draw from.

use std::time::{Duration, Instant};

use mizar_db::Request;
use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Clear, Paragraph, Tabs, Wrap},
};

use crate::{
    model::{Model, Sample},
    source::CaptureRequest,
    theme::Theme,
    views::{
        CapturesView, EndpointsView, FunctionsView, ManageView, PipelineView, TopologyView, View,
    },
};

/// What a key asks the runtime (or the app) to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Hand a change to the data source (store transaction, then reconcile).
    Change(Request),
    /// Open the change form `form` for the object named by `keys` (handled inside the app:
    /// it goes to the view that has the form).
    Edit {
        form: &'static str,
        keys: Vec<String>,
    },
    /// Start a capture (the data source runs it; the samples carry its progress).
    StartCapture(CaptureRequest),
    /// Stop the running capture.
    StopCapture,
}

/// What a view draws from.
pub struct Context<'a> {
    pub model: &'a Model,
    pub theme: Theme,
    pub now: Instant,
}

/// A message shown above the status line until the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

pub struct App {
    views: Vec<Box<dyn View>>,
    current: usize,
    help: bool,
    model: Model,
    theme: Theme,
    message: Option<Message>,
    /// A change handed to the data source and not answered yet.
    pending: Option<Request>,
    period: Duration,
}

const GLOBAL_KEYS: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous view"),
    ("1-6", "go to a view"),
    ("?", "this help (any key closes it)"),
    ("q / Ctrl-C", "quit"),
];

impl App {
    pub fn new(theme: Theme, period: Duration) -> Self {
        Self {
            views: vec![
                Box::new(PipelineView::default()),
                Box::new(EndpointsView::default()),
                Box::new(TopologyView::default()),
                Box::new(ManageView::default()),
                Box::new(FunctionsView::default()),
                Box::new(CapturesView::default()),
            ],
            current: 0,
            help: false,
            model: Model::default(),
            theme,
            message: None,
            pending: None,
            period,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn view_titles(&self) -> Vec<&'static str> {
        self.views.iter().map(|v| v.title()).collect()
    }

    pub fn current_view(&self) -> &'static str {
        self.views[self.current].title()
    }

    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    pub fn help_shown(&self) -> bool {
        self.help
    }

    pub fn on_sample(&mut self, sample: Sample) {
        self.model.ingest(sample);
    }

    /// The data source's answer to a capture's start or stop.
    pub fn on_capture_answer(&mut self, result: Result<String, String>) {
        self.message = Some(match result {
            Ok(text) => Message { text, error: false },
            Err(text) => Message { text, error: true },
        });
    }

    /// The data source's answer to the last change.
    pub fn on_change_done(&mut self, result: Result<String, String>) {
        self.pending = None;
        self.message = Some(match result {
            Ok(text) => Message { text, error: false },
            Err(text) => Message { text, error: true },
        });
    }

    /// A key: global keys first (unless the view is taking text), then the view's.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return Some(Action::Quit);
        }
        if self.help {
            self.help = false;
            return None;
        }
        self.message = None;
        let typing = self.views[self.current].takes_text();
        if !typing {
            match key.code {
                KeyCode::Char('q') => return Some(Action::Quit),
                KeyCode::Char('?') => {
                    self.help = true;
                    return None;
                }
                KeyCode::Tab => {
                    self.current = (self.current + 1) % self.views.len();
                    return None;
                }
                KeyCode::BackTab => {
                    self.current = (self.current + self.views.len() - 1) % self.views.len();
                    return None;
                }
                KeyCode::Char(c @ '1'..='9') => {
                    let i = c as usize - '1' as usize;
                    if i < self.views.len() {
                        self.current = i;
                    }
                    return None;
                }
                _ => {}
            }
        }
        let cx = Context {
            model: &self.model,
            theme: self.theme,
            now: Instant::now(),
        };
        let action = self.views[self.current].handle_key(key, &cx);
        if let Some(Action::Edit { form, keys }) = &action {
            match self.views.iter_mut().position(|v| v.edit(form, keys, &cx)) {
                Some(view) => self.current = view,
                None => {
                    self.message = Some(Message {
                        text: format!("no {form} form"),
                        error: true,
                    })
                }
            }
            return None;
        }
        if let Some(Action::Change(request)) = &action {
            if self.pending.is_some() {
                self.message = Some(Message {
                    text: "a change is still being made; wait for it".into(),
                    error: true,
                });
                return None;
            }
            self.pending = Some(request.clone());
            self.message = Some(Message {
                text: format!("{request}..."),
                error: false,
            });
        }
        action
    }

    pub fn draw(&mut self, frame: &mut Frame, now: Instant) {
        let area = frame.area();
        let banner = self.banner();
        let [tabs, banner_area, main, message, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(u16::from(banner.is_some()) * 2),
            Constraint::Min(3),
            Constraint::Length(self.message.is_some() as u16),
            Constraint::Length(1),
        ])
        .areas(area);
        self.draw_tabs(frame, tabs);
        if let Some(banner) = banner {
            frame.render_widget(
                Paragraph::new(banner).wrap(Wrap { trim: true }),
                banner_area,
            );
        }
        let cx = Context {
            model: &self.model,
            theme: self.theme,
            now,
        };
        self.views[self.current].draw(frame, main, &cx);
        if let Some(m) = &self.message {
            let style = if m.error {
                self.theme.bad()
            } else {
                self.theme.good()
            };
            frame.render_widget(Paragraph::new(Span::styled(m.text.clone(), style)), message);
        }
        frame.render_widget(Paragraph::new(self.status_line(now)), status);
        if self.help {
            self.draw_help(frame, area);
        }
    }

    fn draw_tabs(&self, frame: &mut Frame, area: Rect) {
        let titles: Vec<Line> = self
            .views
            .iter()
            .enumerate()
            .map(|(i, v)| Line::from(format!("{} {}", i + 1, v.title())))
            .collect();
        // The tabs first: the "? help q quit" hint only where it fits beside them.
        let tabs_width: usize = self
            .views
            .iter()
            .enumerate()
            .map(|(i, v)| format!(" {} {} │", i + 1, v.title()).chars().count())
            .sum();
        let hint = if usize::from(area.width) >= tabs_width + 16 {
            16
        } else {
            0
        };
        let [left, right] =
            Layout::horizontal([Constraint::Min(10), Constraint::Length(hint)]).areas(area);
        frame.render_widget(
            Tabs::new(titles)
                .select(self.current)
                .highlight_style(self.theme.selected())
                .divider("│"),
            left,
        );
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("?", self.theme.key()),
                Span::raw(" help "),
                Span::styled("q", self.theme.key()),
                Span::raw(" quit"),
            ]))
            .right_aligned(),
            right,
        );
    }

    /// The one thing the operator must know before reading anything else.
    fn banner(&self) -> Option<Line<'static>> {
        let sample = self.model.latest()?;
        let text = if let Some(err) = &sample.error {
            format!("cannot read everything: {err}")
        } else if !sample.root {
            "not running as root: the maps cannot be read, the data plane shows as down; run \
             `sudo mizar tui`"
                .to_owned()
        } else if sample.dataplane.is_none() {
            "data plane down: showing the store only; `mizar up` attaches it".to_owned()
        } else {
            return None;
        };
        Some(Line::from(Span::styled(text, self.theme.warn())))
    }

    fn status_line(&self, now: Instant) -> Line<'static> {
        let t = self.theme;
        let Some(sample) = self.model.latest() else {
            return Line::from(Span::styled("waiting for the first sample...", t.dim()));
        };
        let host = sample.host.clone().unwrap_or_else(|| "(no host)".into());
        let (state, style) = if sample.dataplane.is_some() {
            ("up", t.good())
        } else {
            ("down", t.bad())
        };
        let age = now.saturating_duration_since(sample.taken);
        let mut spans = vec![
            Span::styled(host, t.title()),
            Span::raw(" │ data plane "),
            Span::styled(state, style),
            Span::raw(format!(" │ sample {:.1}s ago", age.as_secs_f64())),
        ];
        if age > self.period * 3 + Duration::from_secs(1) {
            spans.push(Span::styled(" (stale)", t.bad()));
        }
        spans.push(Span::raw(format!(" │ {}", sample.store)));
        match sample.warnings.as_slice() {
            [] => {}
            [one] => spans.push(Span::styled(format!(" │ warning: {one}"), t.warn())),
            many => spans.push(Span::styled(
                format!(" │ {} warnings: {}", many.len(), many[0]),
                t.warn(),
            )),
        }
        Line::from(spans)
    }

    fn draw_help(&self, frame: &mut Frame, area: Rect) {
        let t = self.theme;
        let view = &self.views[self.current];
        let mut lines = vec![Line::from(Span::styled(
            format!("{} view", view.title()),
            t.title(),
        ))];
        let key_line = |(key, what): &(&str, &str)| {
            Line::from(vec![
                Span::styled(format!("{key:>19}  "), t.key()),
                Span::raw(what.to_string()),
            ])
        };
        lines.extend(view.keys().iter().map(key_line));
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled("everywhere", t.title())));
        lines.extend(GLOBAL_KEYS.iter().map(key_line));
        let height = (lines.len() as u16 + 2).min(area.height);
        let width = 72.min(area.width);
        let popup = Rect {
            x: area.x + (area.width - width) / 2,
            y: area.y + (area.height - height) / 2,
            width,
            height,
        };
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" keys ")),
            popup,
        );
    }
}
