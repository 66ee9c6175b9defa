//! Where the dashboard's data comes from: the appliance implements this over the store and the
//! pinned maps; tests implement it over fixed data.

use mizar_db::Request;

use crate::model::Sample;

/// Made and read on the sampler's own thread (so it need not be `Send`): every call may block
/// on the disk or the kernel, and the UI never waits for it.
pub trait DataSource {
    /// Everything the views show, as of now.
    fn sample(&mut self) -> Sample;

    /// Makes a change through the same path as the CLI (store transaction, then reconcile);
    /// Ok is what the CLI would print, Err its error message.
    fn change(&mut self, request: &Request) -> Result<String, String>;
}
