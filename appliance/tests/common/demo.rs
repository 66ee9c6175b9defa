//! Traffic on the demo fabric, for the tests of the front ends that watch it.

use std::process::{Child, Command, Stdio};

use mizar::demo::Demo;

/// A steady ping between two endpoints' namespaces, stopped when dropped.
pub struct Traffic(Child);

impl Traffic {
    pub fn start(demo: &Demo, from: &str, to: &str) -> Self {
        let to = demo.endpoint(to).ip.to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                demo.ns(from).name(),
                "ping",
                "-q",
                "-i",
                "0.02",
            ])
            .arg(&to)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ping");
        Self(child)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
