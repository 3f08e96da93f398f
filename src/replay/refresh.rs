//! Refresh at serve time (spec §d): shift the recorded dates of a copied head by
//! `now − recorded response start`, as fixed-width overwrites at the template's patch sites.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use super::date::{shift, write_imf_fixdate, IMF_FIXDATE_LEN};
use super::template::PatchSite;

/// Seconds from the recorded response start to `now` (spec §d.1), negative if `now` is earlier.
pub fn delta_seconds(now: SystemTime, timestamp_start: f64) -> f64 {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    now - timestamp_start
}

/// Overwrites the patch sites of a head copied to `head` with the recorded dates shifted by
/// `delta` seconds. A date whose shifted year leaves 1–9999 keeps its recorded value (where
/// mitmproxy would give up replaying and forward the request; a documented difference).
pub fn refresh_head(head: &mut [u8], patches: &[PatchSite], delta: f64) {
    for site in patches {
        let mut date = [0; IMF_FIXDATE_LEN];
        if write_imf_fixdate(shift(site.epoch, delta), &mut date) {
            let pos = site.pos as usize;
            head[pos..pos + IMF_FIXDATE_LEN].copy_from_slice(&date);
        }
    }
}
