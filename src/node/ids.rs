//! Fresh identities and the wall-clock text the translator is handed (it reads neither a clock
//! nor a random source itself).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::translate::conversation::IdSource;

/// UUID-shaped (RFC 9562 §5.4 layout, version 4) identities: Call-IDs, tags, Conversation-IDs,
/// Contribution-IDs, Message-IDs. They must be unique, not secret. Half of each is the standard
/// library's randomly keyed SipHash of a counter (64 unpredictable bits: RFC 3261 §19.3 asks a
/// tag for 32), the other half a random prefix of the source with the counter folded in, so
/// that two ids of one source differ there too (keys and prefix drawn from the OS once per
/// source). One hash an id: the ids are made four times per pager MESSAGE relayed.
pub struct RandomIds {
    keys: RandomState,
    prefix: u64,
    counter: u64,
}

impl RandomIds {
    /// A new source with fresh random keys.
    pub fn new() -> Self {
        let keys = RandomState::new();
        let prefix = keys.hash_one(u64::MAX);
        RandomIds {
            keys,
            prefix,
            counter: 0,
        }
    }

    fn word(&self) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write_u64(self.counter);
        h.finish()
    }
}

impl Default for RandomIds {
    fn default() -> Self {
        Self::new()
    }
}

/// `counter`'s low 60 bits spread around bits 12..16 of the high word, which the version
/// overwrites (RFC 9562 §5.4), so that no two counters below 2^60 give the same high word.
fn spread(counter: u64) -> u64 {
    (counter & 0xfff) | ((counter >> 12) << 16)
}

impl RandomIds {
    /// The next id's text.
    fn next_text(&mut self) -> [u8; 36] {
        self.counter = self.counter.wrapping_add(1);
        let hi = self.prefix ^ spread(self.counter);
        let lo = self.word();
        // Version 4 and the RFC 9562 variant bits.
        let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        uuid_text(hi, lo)
    }
}

impl IdSource for RandomIds {
    fn fresh_id(&mut self) -> Bytes {
        // 8-4-4-4-12 hex digits, written in place: one allocation for the `Bytes` (a
        // `format!` grew its string several times, on every MSRP SEND relayed).
        Bytes::copy_from_slice(&self.next_text())
    }

    fn fresh_id_into(&mut self, out: &mut String) {
        // Hex digits and `-`: ASCII, the conversion always succeeds.
        if let Some(text) = crate::wire::text::ascii_str(&self.next_text()) {
            out.push_str(text);
        }
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
    let text = rfc3339_text(t.duration_since(UNIX_EPOCH).unwrap_or_default());
    text.iter().map(|&b| char::from(b)).collect()
}

/// The RFC 3339 text of `d` since the epoch, as ASCII bytes.
fn rfc3339_text(d: Duration) -> [u8; 24] {
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    // Digits written in place (the node makes one for every request and response it
    // translates; `write!` cost ~2 k instructions). Years outside 0..=9999 are clamped: the
    // text has room for four digits only.
    let y = u32::try_from(y.clamp(0, 9_999)).unwrap_or(0);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    put_decimal(&mut out, 0, 4, y);
    put_decimal(&mut out, 5, 2, m);
    put_decimal(&mut out, 8, 2, day);
    put_decimal(&mut out, 11, 2, (rem / 3600) as u32);
    put_decimal(&mut out, 14, 2, ((rem / 60) % 60) as u32);
    put_decimal(&mut out, 17, 2, (rem % 60) as u32);
    put_decimal(&mut out, 20, 3, d.subsec_millis());
    out
}

/// `v`'s low `width` decimal digits into `out[at..at + width]`.
fn put_decimal(out: &mut [u8; 24], at: usize, width: usize, mut v: u32) {
    for i in (at..at + width).rev() {
        if let Some(b) = out.get_mut(i) {
            *b = b'0' + (v % 10) as u8;
        }
        v /= 10;
    }
}

/// The wall clock as RFC 3339 text, kept by the core: the date and time of day are worked out
/// once a second and only the milliseconds written for each message after that (the text
/// went into every request and response translated, ~900 instructions and an allocation each).
pub struct DateTimeText {
    secs: u64,
    text: [u8; 24],
}

impl Default for DateTimeText {
    fn default() -> Self {
        DateTimeText {
            secs: u64::MAX,
            text: *b"1970-01-01T00:00:00.000Z",
        }
    }
}

impl DateTimeText {
    /// The text of `t`.
    pub fn at(&mut self, t: SystemTime) -> &str {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        if d.as_secs() == self.secs {
            put_decimal(&mut self.text, 20, 3, d.subsec_millis());
        } else {
            self.text = rfc3339_text(d);
            self.secs = d.as_secs();
        }
        // ASCII digits and separators only: always UTF-8.
        std::str::from_utf8(&self.text).unwrap_or("1970-01-01T00:00:00.000Z")
    }
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

    /// The id written in place is the UUID text `fresh_id` gives, appended, and a new one.
    #[test]
    fn id_written_in_place_is_a_fresh_uuid() {
        let mut ids = RandomIds::new();
        let mut out = String::from("tag=");
        ids.fresh_id_into(&mut out);
        let written = out.strip_prefix("tag=").expect("appended");
        assert_eq!(written.len(), 36);
        assert_eq!(written.as_bytes()[14], b'4', "version 4");
        let next = ids.fresh_id();
        assert_ne!(written.as_bytes(), &next[..]);
        let mut again = String::new();
        ids.fresh_id_into(&mut again);
        assert_ne!(again, written);
        assert_ne!(again.as_bytes(), &next[..]);
    }

    #[test]
    fn ids_of_one_source_never_repeat_their_high_half() {
        // The counter survives the version nibble: consecutive counters and counters that
        // differ only in the nibble's bits give distinct high words.
        let masked = |c: u64| (spread(c) & 0xffff_ffff_ffff_0fff) | 0x4000;
        let mut seen = std::collections::HashSet::new();
        for c in (0..70_000u64).chain([1 << 59, (1 << 60) - 1]) {
            assert!(seen.insert(masked(c)), "counter {c}");
        }
        let mut ids = RandomIds::new();
        let all: std::collections::HashSet<Bytes> = (0..20_000).map(|_| ids.fresh_id()).collect();
        assert_eq!(all.len(), 20_000);
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
    fn the_kept_text_equals_the_text_made_each_time() {
        let mut kept = DateTimeText::default();
        // Within a second, across seconds, days and years, and back in time.
        let mut ms: u64 = 1_795_602_005_123;
        for step in [
            0u64,
            1,
            7,
            450,
            999,
            1_000,
            86_399_999,
            31_536_000_000,
            3,
            0,
        ] {
            ms += step;
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(kept.at(t), rfc3339_utc(t));
        }
        let back = UNIX_EPOCH + Duration::from_millis(1_000);
        assert_eq!(kept.at(back), "1970-01-01T00:00:01.000Z");
        assert_eq!(kept.at(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
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
