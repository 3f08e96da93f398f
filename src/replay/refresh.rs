//! Refresh at serve time (spec §d): shift the recorded dates of a copied head by
//! `now − recorded response start`, as fixed-width overwrites at the template's patch sites.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use super::date::{shift, write_imf_fixdate_cached, IMF_FIXDATE_LEN};
use super::template::{CookieFallback, PatchSite, NO_FALLBACK};

/// Seconds from the recorded response start to `now` (spec §d.1), negative if `now` is earlier.
pub fn delta_seconds(now: SystemTime, timestamp_start: f64) -> f64 {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    now - timestamp_start
}

/// The shifted date of a site, or `None` when its year leaves 1–9999.
fn shifted(site: &PatchSite, delta: f64) -> Option<[u8; IMF_FIXDATE_LEN]> {
    let mut date = [0; IMF_FIXDATE_LEN];
    write_imf_fixdate_cached(shift(site.epoch, delta), &mut date).then_some(date)
}

/// Overwrites the patch sites of a head copied to `head` with the recorded dates shifted by
/// `delta` seconds. A header date whose shifted year leaves 1–9999 keeps its recorded value (where
/// mitmproxy would give up replaying and forward the request; a documented difference). Returns
/// `false`, leaving `head` partly patched, when a cookie date cannot be shifted: that cookie field
/// must then be sent as recorded ([`write_refreshed_head`] does).
pub fn refresh_head(head: &mut [u8], patches: &[PatchSite], delta: f64) -> bool {
    for site in patches {
        match shifted(site, delta) {
            Some(date) => {
                let pos = site.pos as usize;
                head[pos..pos + IMF_FIXDATE_LEN].copy_from_slice(&date);
            }
            None if site.fallback != NO_FALLBACK => return false,
            None => {}
        }
    }
    true
}

/// Appends `head` to `out` with its dates shifted by `delta` (spec §d). Normally a copy and
/// fixed-width overwrites; when a cookie expiry cannot be shifted, that `Set-Cookie` value goes
/// out exactly as recorded (spec §d.3.5) and the patch sites after it move accordingly.
/// `fallback` gives a site's cookie fallback and the recorded value.
pub fn write_refreshed_head<'r>(
    out: &mut Vec<u8>,
    head: &[u8],
    patches: &[PatchSite],
    delta: f64,
    fallback: impl Fn(&PatchSite) -> Option<(CookieFallback, &'r [u8])>,
) {
    let start = out.len();
    out.extend_from_slice(head);
    if refresh_head(&mut out[start..], patches, delta) {
        return;
    }
    // Rare: a cookie expiry near year 9999. Rebuild the head with that field as recorded.
    out.truncate(start);
    let falls_back = |field: u32| {
        field != NO_FALLBACK
            && patches
                .iter()
                .filter(|p| p.fallback == field)
                .any(|p| shifted(p, delta).is_none())
    };
    let fallback = &fallback;
    let falls_back = &falls_back;
    // The fields that fall back, in head order (sites are in head order, a field's together).
    let fallen = || {
        let mut last = NO_FALLBACK;
        patches.iter().filter_map(move |site| {
            if site.fallback == last {
                return None;
            }
            last = site.fallback;
            if !falls_back(site.fallback) {
                return None;
            }
            fallback(site)
        })
    };
    let mut copied = 0;
    for (field, original) in fallen() {
        out.extend_from_slice(&head[copied..field.start as usize]);
        out.extend_from_slice(original);
        copied = field.end as usize;
    }
    out.extend_from_slice(&head[copied..]);
    for site in patches {
        if falls_back(site.fallback) {
            continue;
        }
        let Some(date) = shifted(site, delta) else {
            continue;
        };
        let mut pos = start as isize + site.pos as isize;
        for (field, original) in fallen() {
            if field.end <= site.pos {
                pos += original.len() as isize - (field.end - field.start) as isize;
            }
        }
        let pos = pos as usize;
        out[pos..pos + IMF_FIXDATE_LEN].copy_from_slice(&date);
    }
}
