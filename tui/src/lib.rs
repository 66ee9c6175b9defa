//! The terminal dashboard (ratatui + crossterm): per-stage counters, endpoint tables, function
//! chains and captures, driven by a data-source trait so it is testable without a kernel.
//!
//! Empty until the dashboard issue lands.
