//! Where the dashboard's data comes from: the appliance implements this over the store and the
//! pinned maps; tests implement it over fixed data.

use mizar_db::Request;

use crate::model::Sample;

/// A capture the dashboard asks for: the fields of `mizar capture` it offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureRequest {
    /// Tap points, comma-separated, as `--at` takes them.
    pub points: String,
    /// A filter expression, as `--filter` takes it.
    pub filter: String,
    /// Stop after this many packets (None: until stopped).
    pub count: Option<u64>,
    /// The file (None: the state directory's captures/).
    pub file: Option<String>,
}

/// Made and read on the sampler's own thread (so it need not be `Send`): every call may block
/// on the disk or the kernel, and the UI never waits for it.
pub trait DataSource {
    /// Everything the views show, as of now.
    fn sample(&mut self) -> Sample;

    /// Makes a change through the same path as the CLI (store transaction, then reconcile);
    /// Ok is what the CLI would print, Err its error message.
    fn change(&mut self, request: &Request) -> Result<String, String>;

    /// Starts a capture that runs until stopped (or its count); its progress and last packets
    /// come in the samples. Ok says where the file goes; Err why nothing started.
    fn start_capture(&mut self, _request: &CaptureRequest) -> Result<String, String> {
        Err("this data source cannot capture".into())
    }

    /// Stops the running capture; Ok is its summary.
    fn stop_capture(&mut self) -> Result<String, String> {
        Err("no capture is running".into())
    }
}
