//! The Mizar appliance: loads and configures the XDP data plane from the config store, and
//! feeds the dashboard (and, in later issues, captures).

pub mod bench;
pub mod capture;
pub mod dashboard;
pub mod dataplane;
pub mod demo;
pub mod fabric;
pub mod fuzz;
pub mod lab;
pub mod metrics;
pub mod packet;

/// An error and its causes, each cause once: most messages already say their cause, and
/// repeating it ("(os error 2): ... (os error 2)") only hides what matters. What the CLI prints
/// and what the dashboard shows.
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}
