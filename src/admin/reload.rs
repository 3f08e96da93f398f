//! `POST /reload` and `SIGHUP`: the `-S` files read again into a new [`Replayer`] with the same
//! options, for the engine handle's `swap_recording`. A file that fails to load is the loader's
//! error and nothing else changes.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ReplayOptions;
use crate::flowfile::{LoadError, LoadOptions};
use crate::replay::Replayer;

/// What a reload needs: the files and options of the start-up load.
#[derive(Debug, Clone)]
pub struct Reloader {
    /// The `-S` files, in order.
    pub files: Vec<PathBuf>,
    /// How they were loaded (`--skip-bad-flows`, the decompression bound).
    pub load: LoadOptions,
    /// The matching options.
    pub replay: ReplayOptions,
}

impl Reloader {
    /// Reads the files again (one pass, as at start-up, with its warnings on stderr) and builds
    /// the replayer and its miss index; the current recording is untouched either way. Slow for
    /// a large recording: call it off the serving threads.
    pub fn load(&self) -> Result<Arc<Replayer>, LoadError> {
        let mut builder = Replayer::builder(&self.replay);
        let (recording, _) =
            crate::inspect::load(&self.files, self.load, &mut |e| builder.observe(e))?;
        let replayer = builder.build(Arc::new(recording));
        replayer.miss_index();
        Ok(Arc::new(replayer))
    }
}
