//! The views. Each is a component: it keeps its own state (selection, sort, filter, form),
//! turns keys into state changes or [`Action`]s, and draws from the [`Context`]. A new view
//! (functions, captures) is one more type implementing [`View`], added to the app's list.

mod captures;
mod endpoints;
mod functions;
mod manage;
mod pipeline;
mod topology;

pub use captures::CapturesView;
pub use endpoints::{Column, EndpointsView};
pub use functions::FunctionsView;
pub use manage::ManageView;
pub use pipeline::PipelineView;
pub use topology::TopologyView;

use ratatui::{Frame, crossterm::event::KeyEvent, layout::Rect};

use crate::app::{Action, Context};

pub trait View {
    fn title(&self) -> &'static str;
    /// (key, what it does), for the help overlay.
    fn keys(&self) -> &'static [(&'static str, &'static str)];
    fn handle_key(&mut self, key: KeyEvent, cx: &Context) -> Option<Action>;
    fn draw(&mut self, frame: &mut Frame, area: Rect, cx: &Context);
    /// While true (a filter or a form field is being typed), every key goes to the view.
    fn takes_text(&self) -> bool {
        false
    }
    /// Opens the change form `form` for the object named by `keys`, filled in; false when
    /// this view has no such form.
    fn edit(&mut self, _form: &str, _keys: &[String], _cx: &Context) -> bool {
        false
    }
}

/// A row cursor over `len` rows with a scroll offset: what a 100,000-row table needs to draw
/// only its visible window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
    pub offset: usize,
}

impl Cursor {
    /// Moves by `delta` rows within `len`.
    pub fn step(&mut self, delta: isize, len: usize) {
        if len == 0 {
            *self = Self::default();
            return;
        }
        self.selected = self.selected.saturating_add_signed(delta).min(len - 1);
    }

    pub fn home(&mut self) {
        self.selected = 0;
    }

    pub fn end(&mut self, len: usize) {
        self.selected = len.saturating_sub(1);
    }

    /// Keeps the selection inside `len` rows and in view of a window of `height` rows; returns
    /// the visible range.
    pub fn window(&mut self, len: usize, height: usize) -> std::ops::Range<usize> {
        if len == 0 || height == 0 {
            self.selected = 0;
            self.offset = 0;
            return 0..0;
        }
        self.selected = self.selected.min(len - 1);
        if self.selected < self.offset {
            self.offset = self.selected;
        }
        if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
        self.offset..(self.offset + height).min(len)
    }
}

/// Keys that move a cursor, shared by the list views: arrows, j/k, page keys, Home/End, g/G.
pub fn move_cursor(cursor: &mut Cursor, key: KeyEvent, len: usize, page: usize) -> bool {
    use ratatui::crossterm::event::KeyCode::*;
    let page = page.max(1) as isize;
    match key.code {
        Down | Char('j') => cursor.step(1, len),
        Up | Char('k') => cursor.step(-1, len),
        PageDown => cursor.step(page, len),
        PageUp => cursor.step(-page, len),
        Home | Char('g') => cursor.home(),
        End | Char('G') => cursor.end(len),
        _ => return false,
    }
    true
}

/// A history as one line of block characters, scaled to its own maximum (the newest last).
pub fn spark_text(history: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &history[history.len().saturating_sub(width)..];
    let max = tail.iter().copied().fold(0.0, f64::max);
    tail.iter()
        .map(|v| {
            if max <= 0.0 || *v <= 0.0 {
                ' '
            } else {
                BARS[((v / max) * 7.0).round() as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_window_follows_selection() {
        let mut c = Cursor::default();
        assert_eq!(c.window(100_000, 10), 0..10);
        c.step(15, 100_000);
        assert_eq!(c.window(100_000, 10), 6..16);
        c.end(100_000);
        assert_eq!(c.window(100_000, 10), 99_990..100_000);
        // The rows shrink under the cursor (a filter): it stays on the last row.
        assert_eq!(c.window(3, 10), 0..3);
        assert_eq!(c.selected, 2);
        assert_eq!(c.window(0, 10), 0..0);
    }

    #[test]
    fn spark_text_scales_to_its_maximum() {
        assert_eq!(spark_text(&[0.0, 1.0, 2.0, 4.0], 10), " ▃▅█");
        assert_eq!(spark_text(&[5.0, 0.0, 8.0], 2), " █");
        assert_eq!(spark_text(&[], 4), "");
    }
}
