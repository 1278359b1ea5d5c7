//! Fresh identities and the wall-clock text the translator is handed (it reads neither a clock
//! nor a random source itself).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::translate::conversation::IdSource;

/// UUID-shaped (RFC 9562 §5.4 layout, version 4) identities: Call-IDs, tags, Conversation-IDs,
/// Contribution-IDs, Message-IDs. They must be unique, not secret: 128 bits from the standard
/// library's randomly keyed SipHash over a counter (keys drawn from the OS once per source).
pub struct RandomIds {
    keys: RandomState,
    counter: u64,
}

impl RandomIds {
    /// A new source with fresh random keys.
    pub fn new() -> Self {
        RandomIds {
            keys: RandomState::new(),
            counter: 0,
        }
    }

    fn word(&self, lane: u64) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write_u64(self.counter);
        h.write_u64(lane);
        h.finish()
    }
}

impl Default for RandomIds {
    fn default() -> Self {
        Self::new()
    }
}

impl IdSource for RandomIds {
    fn fresh_id(&mut self) -> Bytes {
        self.counter = self.counter.wrapping_add(1);
        let hi = self.word(0);
        let lo = self.word(1);
        // Version 4 and the RFC 9562 variant bits.
        let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        // 8-4-4-4-12 hex digits, written in place: one allocation for the `Bytes` (a
        // `format!` grew its string several times, on every MSRP SEND relayed).
        Bytes::copy_from_slice(&uuid_text(hi, lo))
    }
}

/// `hi` and `lo` as UUID text, 8-4-4-4-12 lowercase hex digits (RFC 9562 §4).
fn uuid_text(hi: u64, lo: u64) -> [u8; 36] {
    let mut out = [b'-'; 36];
    put_hex(&mut out[0..8], hi >> 32);
    put_hex(&mut out[9..13], hi >> 16);
    put_hex(&mut out[14..18], hi);
    put_hex(&mut out[19..23], lo >> 48);
    put_hex(&mut out[24..36], lo);
    out
}

/// The low `dst.len()` hex digits of `v`, lowercase, most significant first.
fn put_hex(dst: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for d in dst.iter_mut().rev() {
        *d = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// `t` as RFC 3339 UTC text with milliseconds (`2026-11-25T10:00:05.123Z`), for the CPIM
/// `DateTime` of content the gateway wraps (RFC 3862 §3.3.4).
pub fn rfc3339_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    // Digits written in place (the node makes one for every request and response it
    // translates; `write!` cost ~2 k instructions). Years outside 0..=9999 are clamped: the
    // text has room for four digits only.
    let y = u32::try_from(y.clamp(0, 9_999)).unwrap_or(0);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            if let Some(b) = out.get_mut(i) {
                *b = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, day);
    put(11, 2, (rem / 3600) as u32);
    put(14, 2, ((rem / 60) % 60) as u32);
    put(17, 2, (rem % 60) as u32);
    put(20, 3, d.subsec_millis());
    out.iter().map(|&b| char::from(b)).collect()
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let mut ids = RandomIds::new();
        let a = ids.fresh_id();
        let b = ids.fresh_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a[14], b'4', "version 4");
        assert!(
            matches!(a[19], b'8' | b'9' | b'a' | b'b'),
            "RFC 9562 variant"
        );
        assert_ne!(RandomIds::new().fresh_id(), RandomIds::new().fresh_id());
    }

    #[test]
    fn ids_are_written_as_the_uuid_text_form() {
        for (hi, lo) in [
            (0u64, 0u64),
            (u64::MAX, u64::MAX),
            (0x0123_4567_89ab_4def, 0x8edc_ba98_7654_3210),
            (0xdead_beef_0000_4001, 0xbfff_0000_ffff_0001),
        ] {
            let out = uuid_text(hi, lo);
            let want = format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                hi >> 32,
                (hi >> 16) & 0xffff,
                hi & 0xffff,
                lo >> 48,
                lo & 0xffff_ffff_ffff
            );
            assert_eq!(std::str::from_utf8(&out).unwrap(), want);
        }
    }

    #[test]
    fn rfc3339_digits_equal_the_formatted_text() {
        // Steps of ~1.3 days plus odd milliseconds through 1970..2300: every field moves.
        let mut ms: u64 = 0;
        while ms < 10_400_000_000_000 {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            let d = t.duration_since(UNIX_EPOCH).unwrap();
            let secs = d.as_secs();
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (y, m, day) = civil_from_days(days as i64);
            let want = format!(
                "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3600,
                (rem / 60) % 60,
                rem % 60,
                d.subsec_millis()
            );
            assert_eq!(rfc3339_utc(t), want);
            ms += 112_233_445_567;
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_602_005_123);
        assert_eq!(rfc3339_utc(t), "2026-11-25T10:20:05.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00.000Z");
        let late = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
        assert_eq!(rfc3339_utc(late), "9999-12-31T23:59:59.999Z");
    }
}
