//! The terminal loop. The data source lives on a sampler thread of its own: it samples every
//! period (and right after a change) and sends owned samples over a channel, so a slow disk or
//! kernel never freezes the screen, and the UI and the sampler share no lock.

use std::{
    io,
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use mizar_db::Request;
use ratatui::crossterm::event::{Event, EventStream, KeyEventKind};
use tokio::sync::mpsc;

use crate::{Action, App, CaptureRequest, DataSource, Sample, Theme};

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// How often the sampler reads the counters.
    pub period: Duration,
    pub theme: Theme,
}

enum FromSampler {
    Sample(Box<Sample>),
    Changed(Result<String, String>),
    Capture(Result<String, String>),
}

/// What the UI asks of the sampler (which owns the data source).
enum ToSampler {
    Change(Request),
    StartCapture(CaptureRequest),
    StopCapture,
}

/// Runs the dashboard until the user quits (q, Ctrl-C) or the process is told to stop
/// (SIGTERM, SIGHUP); the terminal is restored in every case, a panic included.
/// `make_source` runs on the sampler thread, which then owns the source.
pub fn run<S: DataSource>(
    make_source: impl FnOnce() -> S + Send + 'static,
    options: RunOptions,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_loop(make_source, options))
}

fn spawn_sampler<S: DataSource>(
    make_source: impl FnOnce() -> S + Send + 'static,
    period: Duration,
    to_ui: mpsc::Sender<FromSampler>,
    requests: std_mpsc::Receiver<ToSampler>,
) {
    std::thread::Builder::new()
        .name("mizar-sampler".into())
        .spawn(move || {
            let mut source = make_source();
            let mut next = Instant::now();
            loop {
                if Instant::now() >= next {
                    next = Instant::now() + period;
                    let sample = source.sample();
                    if to_ui
                        .blocking_send(FromSampler::Sample(Box::new(sample)))
                        .is_err()
                    {
                        return;
                    }
                }
                let wait = next.saturating_duration_since(Instant::now());
                match requests.recv_timeout(wait) {
                    Ok(request) => {
                        let answer = match request {
                            ToSampler::Change(r) => FromSampler::Changed(source.change(&r)),
                            ToSampler::StartCapture(r) => {
                                FromSampler::Capture(source.start_capture(&r))
                            }
                            ToSampler::StopCapture => FromSampler::Capture(source.stop_capture()),
                        };
                        if to_ui.blocking_send(answer).is_err() {
                            return;
                        }
                        // Show the effect at once.
                        next = Instant::now();
                    }
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        })
        .expect("spawning the sampler thread");
}

async fn run_loop<S: DataSource>(
    make_source: impl FnOnce() -> S + Send + 'static,
    options: RunOptions,
) -> io::Result<()> {
    let (to_ui, mut from_sampler) = mpsc::channel(2);
    let (requests, sampler_requests) = std_mpsc::channel();
    spawn_sampler(make_source, options.period, to_ui, sampler_requests);

    let mut terms = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // ratatui::init enters raw mode and the alternate screen, and installs a panic hook that
    // restores the terminal before the panic is printed.
    let mut terminal = ratatui::try_init()?;
    let mut app = App::new(options.theme, options.period);
    let mut events = EventStream::new();
    // Redraws between samples keep the sample's age honest.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut sampler_alive = true;
    // Tests check that a panic restores the terminal: MIZAR_TUI_PANIC_AFTER=N panics in the Nth
    // frame's drawing.
    let panic_after: Option<u64> = std::env::var("MIZAR_TUI_PANIC_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut frames = 0u64;
    let result = loop {
        frames += 1;
        let draw = terminal.draw(|frame| {
            app.draw(frame, Instant::now());
            if panic_after.is_some_and(|n| frames >= n) {
                panic!("MIZAR_TUI_PANIC_AFTER={frames}: panicking mid-draw, as asked");
            }
        });
        if let Err(e) = draw {
            break Err(e);
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    match app.on_key(key) {
                        Some(Action::Quit) => break Ok(()),
                        Some(Action::Change(request)) => {
                            let sent = requests.send(ToSampler::Change(request));
                            if sent.is_err() {
                                app.on_change_done(Err("the sampler stopped: restart mizar tui".into()));
                            }
                        }
                        Some(Action::StartCapture(request)) => {
                            if requests.send(ToSampler::StartCapture(request)).is_err() {
                                app.on_capture_answer(Err("the sampler stopped: restart mizar tui".into()));
                            }
                        }
                        Some(Action::StopCapture) => {
                            if requests.send(ToSampler::StopCapture).is_err() {
                                app.on_capture_answer(Err("the sampler stopped: restart mizar tui".into()));
                            }
                        }
                        // The app routes an edit to its form itself.
                        Some(Action::Edit { .. }) | None => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            },
            message = from_sampler.recv(), if sampler_alive => match message {
                Some(FromSampler::Sample(sample)) => app.on_sample(*sample),
                Some(FromSampler::Changed(result)) => app.on_change_done(result),
                Some(FromSampler::Capture(result)) => app.on_capture_answer(result),
                // The sampler died (it panicked): the status line shows the sample aging.
                None => sampler_alive = false,
            },
            _ = tick.tick() => {}
            _ = terms.recv() => break Ok(()),
            _ = hangups.recv() => break Ok(()),
        }
    };
    ratatui::restore();
    result
}
