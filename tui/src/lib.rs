//! The terminal dashboard (ratatui + crossterm): the pipeline stage by stage, the endpoints, the
//! topology, and management forms, driven by a [`DataSource`] so it is testable without a kernel.
//!
//! - [`model`]: owned samples and the rates and history derived from them (no terminal, no kernel).
//! - [`views`]: one component per view; a new view implements [`views::View`].
//! - [`app`]: the view switcher, help overlay, banner and status line.
//! - [`run`]: the terminal loop: a sampler thread owns the data source and sends samples over a
//!   channel (no lock is shared with the UI), keys and samples are handled as they come, and the
//!   terminal is restored on exit, on panic and on Ctrl-C.
//! - [`fixture`]: a fixed fabric with steady traffic, for the tests of this crate and of the
//!   front ends built on its samples.

pub mod app;
pub mod fixture;
pub mod model;
mod run;
pub mod source;
pub mod theme;
pub mod views;

pub use app::{Action, App};
pub use model::Sample;
pub use run::{RunOptions, run};
pub use source::{CaptureRequest, DataSource};
pub use theme::Theme;
