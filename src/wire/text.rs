//! Small byte-level helpers shared by the text-based codecs (SIP framing, MSRP, CPIM, SDP).
//! Nothing here allocates.

use memchr::memmem;

/// Position of the next CRLF at or after `from`, as an index into `buf`.
#[inline]
pub fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    memmem::find(tail, b"\r\n").map(|i| i + from)
}

/// Position of the first empty line (`CRLF CRLF`) at or after `from`: the index of its first
/// CR, so that the header block is `buf[..pos]` and the body starts at `pos + 4`.
#[inline]
pub fn find_blank_line(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    memmem::find(tail, b"\r\n\r\n").map(|i| i + from)
}

/// The first this many bytes of a haystack are searched a word at a time here; the rest by
/// memchr, whose vector loop pays for its setup (about a hundred instructions a call) only on
/// long runs.
const SHORT: usize = 64;
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is zero is set, and no bit below the first such byte
/// (the borrow of a zero byte can only mark bytes above it): the first zero byte is exact.
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// The first byte of `hay` for which `hit` (given a word and a byte) says yes, eight bytes at a
/// time (SWAR): `word` marks the matching bytes of a little-endian word as [`zero_bytes`] does.
#[inline]
fn find_short(hay: &[u8], word: impl Fn(u64) -> u64, byte: impl Fn(u8) -> bool) -> Option<usize> {
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0usize;
    for c in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(c) else {
            break;
        };
        let z = word(u64::from_le_bytes(bytes));
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|b| byte(*b))
        .map(|i| at + i)
}

/// Search the first [`SHORT`] bytes of `hay` a word at a time, the rest (when the byte was not
/// there) with `far`: a line end or a separator is usually near.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline]
fn near_then_far(
    hay: &[u8],
    word: impl Fn(u64) -> u64,
    byte: impl Fn(u8) -> bool,
    far: impl FnOnce(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let (near, rest) = hay.split_at(hay.len().min(SHORT));
    match find_short(near, word, byte) {
        Some(i) => Some(i),
        None if rest.is_empty() => None,
        None => far(rest).map(|i| i + SHORT),
    }
}

/// [`near_then_far`] with the near part read 16 bytes at a time first (`blocks`: where the
/// first match is in the whole blocks of its haystack, or how far it read, as the
/// [`wide`] searches say), its tail a word at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn near_then_far_wide(
    hay: &[u8],
    blocks: impl Fn(&[u8]) -> (usize, bool),
    word: impl Fn(u64) -> u64,
    byte: impl Fn(u8) -> bool,
    far: impl FnOnce(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let (near, rest) = hay.split_at(hay.len().min(SHORT));
    let (at, found) = blocks(near);
    if found {
        return Some(at);
    }
    match find_short(near.get(at..).unwrap_or_default(), word, byte).map(|i| at + i) {
        Some(i) => Some(i),
        None if rest.is_empty() => None,
        None => far(rest).map(|i| i + SHORT),
    }
}

/// `memchr::memchr`, faster when the byte is near (within [`SHORT`] bytes) or the haystack is
/// short, as in header values, parameters and lines.
#[inline]
pub fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    let n = LO.wrapping_mul(u64::from(needle));
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return near_then_far_wide(
        hay,
        |near| wide::find([needle; 3], near),
        |w| zero_bytes(w ^ n),
        |b| b == needle,
        |rest| memchr::memchr(needle, rest),
    );
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    near_then_far(
        hay,
        |w| zero_bytes(w ^ n),
        |b| b == needle,
        |rest| memchr::memchr(needle, rest),
    )
}

/// `memchr::memchr2`, faster on near bytes and short haystacks ([`find_byte`]).
#[inline]
pub fn find_byte2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    let (na, nb) = (LO.wrapping_mul(u64::from(a)), LO.wrapping_mul(u64::from(b)));
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return near_then_far_wide(
        hay,
        |near| wide::find([a, b, b], near),
        |w| zero_bytes(w ^ na) | zero_bytes(w ^ nb),
        |c| c == a || c == b,
        |rest| memchr::memchr2(a, b, rest),
    );
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    near_then_far(
        hay,
        |w| zero_bytes(w ^ na) | zero_bytes(w ^ nb),
        |c| c == a || c == b,
        |rest| memchr::memchr2(a, b, rest),
    )
}

/// `memchr::memchr3`, faster on near bytes and short haystacks ([`find_byte`]).
#[inline]
pub fn find_byte3(a: u8, b: u8, c: u8, hay: &[u8]) -> Option<usize> {
    let n = |x: u8| LO.wrapping_mul(u64::from(x));
    let (na, nb, nc) = (n(a), n(b), n(c));
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return near_then_far_wide(
        hay,
        |near| wide::find([a, b, c], near),
        |w| zero_bytes(w ^ na) | zero_bytes(w ^ nb) | zero_bytes(w ^ nc),
        |x| x == a || x == b || x == c,
        |rest| memchr::memchr3(a, b, c, rest),
    );
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    near_then_far(
        hay,
        |w| zero_bytes(w ^ na) | zero_bytes(w ^ nb) | zero_bytes(w ^ nc),
        |x| x == a || x == b || x == c,
        |rest| memchr::memchr3(a, b, c, rest),
    )
}

/// The first of four bytes in `hay`, a word at a time whatever its length (memchr has no
/// four-byte search).
#[inline]
pub fn find_byte4(a: u8, b: u8, c: u8, d: u8, hay: &[u8]) -> Option<usize> {
    let n = |x: u8| LO.wrapping_mul(u64::from(x));
    let (na, nb, nc, nd) = (n(a), n(b), n(c), n(d));
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let (at, hay) = match wide::find4([a, b, c, d], hay) {
        (at, true) => return Some(at),
        (at, false) => (at, hay.get(at..).unwrap_or_default()),
    };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let at = 0usize;
    find_short(
        hay,
        |w| zero_bytes(w ^ na) | zero_bytes(w ^ nb) | zero_bytes(w ^ nc) | zero_bytes(w ^ nd),
        |x| x == a || x == b || x == c || x == d,
    )
    .map(|i| at + i)
}

const SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Sixteen bytes at a time with SSE2 (part of every x86_64 CPU: the build enables it, no
/// run-time detection): the searches of the CPIM, SIP and parameter readers, where a line or a
/// value is a few dozen bytes and the word-at-a-time tests cost ~10–25 instructions a word.
/// Each search reads whole blocks of 16 bytes and says how far it got: the caller reads the
/// tail (fewer than 16 bytes) the portable way. A block is built from two little-endian words
/// (`_mm_set_epi64x`, which the compiler turns into one unaligned load): no pointer is read.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod wide {
    use core::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set_epi64x, _mm_set1_epi8,
    };

    /// The safe entry to each search: the `#[target_feature]` functions below may only be
    /// called where SSE2 is known to be there.
    macro_rules! entry {
        ($(#[$doc:meta])* $name:ident => $inner:ident ($($arg:ident: $ty:ty),*)) => {
            $(#[$doc])*
            #[inline]
            pub(super) fn $name($($arg: $ty),*) -> (usize, bool) {
                // SAFETY: this module is compiled only when the build enables SSE2
                // (`cfg(target_feature = "sse2")`, the x86_64 baseline), so the CPU that runs
                // it has SSE2; the function reads only through safe slice accessors.
                unsafe { $inner($($arg),*) }
            }
        };
    }

    entry! {
        /// The first of the bytes `n` (repeated for fewer than three) in the whole blocks of
        /// `hay`: `(where, true)`, else `(bytes read, false)`.
        find => find_in(n: [u8; 3], hay: &[u8])
    }
    entry! {
        /// [`find`] of four bytes.
        find4 => find4_in(n: [u8; 4], hay: &[u8])
    }
    entry! {
        /// [`super::has_space_or_control`] over the whole blocks of `hay`: `(_, true)` when
        /// one has such a byte, else `(bytes read, false)`.
        at_most_space => at_most_space_in(hay: &[u8])
    }
    entry! {
        /// [`super::find_line_end`] over the whole blocks of `hay`: `(where, true)` for the
        /// first CR, LF or NUL, else `(bytes read, false)`.
        line_end => line_end_in(hay: &[u8])
    }
    entry! {
        /// [`super::find_in_range`] over the whole blocks of `hay`: `(where, true)` for the
        /// first byte in `lo..=hi`, else `(bytes read, false)`.
        in_range => in_range_in(lo: u8, hi: u8, hay: &[u8])
    }
    entry! {
        /// [`super::alnum_dash_run`] over the whole blocks of `hay`: `(run, true)` when a
        /// byte other than an ASCII letter, digit or `-` ends it there, else
        /// `(bytes read, false)`.
        alnum_dash_run => alnum_dash_run_in(hay: &[u8])
    }

    /// [`super::LineMarks`] of 64 bytes: bit `i` set when byte `i` is below 14 (CR, LF and
    /// NUL are; a tab, the one other byte there in a text line, is rare).
    #[inline]
    pub(super) fn low_marks(w: &[u8; 64]) -> u64 {
        // SAFETY: this module is compiled only when the build enables SSE2 (as `entry!`
        // says); the function reads only through safe slice accessors.
        unsafe { low_marks_in(w) }
    }

    /// Bit `i` set when byte `i` of the 16 bytes of `hay` at `at` is in `lo..=hi`; `None`
    /// when `hay` has fewer than 16 bytes there.
    #[inline]
    pub(super) fn range_block(hay: &[u8], at: usize, lo: u8, hi: u8) -> Option<u32> {
        // SAFETY: as `low_marks`.
        unsafe { range_block_in(hay, at, lo, hi) }
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn range_block_in(hay: &[u8], at: usize, lo: u8, hi: u8) -> Option<u32> {
        Some(mask(in_range_of(block(hay, at)?, lo, hi)))
    }

    /// Bit `i` set when byte `i` of the 16 bytes of `hay` at `at` is not an ASCII letter,
    /// digit or `-`; `None` when `hay` has fewer than 16 bytes there.
    #[inline]
    pub(super) fn not_name_block(hay: &[u8], at: usize) -> Option<u32> {
        // SAFETY: as `low_marks`.
        unsafe { not_name_block_in(hay, at) }
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn low_marks_in(w: &[u8; 64]) -> u64 {
        // Four blocks written out: constant shifts, no loop (the blocks are always there).
        let low = |v: Option<__m128i>| v.map_or(0, |v| u64::from(mask(in_range_of(v, 0, 13))));
        low(block(w, 0))
            | low(block(w, 16)) << 16
            | low(block(w, 32)) << 32
            | low(block(w, 48)) << 48
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn not_name_block_in(hay: &[u8], at: usize) -> Option<u32> {
        let v = block(hay, at)?;
        let alpha = in_range_of(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
        let digit = in_range_of(v, b'0', b'9');
        Some(!mask(_mm_or_si128(_mm_or_si128(alpha, digit), eq(v, b'-'))) & 0xffff)
    }

    /// The 16 bytes of `hay` at `at`, when it has them.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn block(hay: &[u8], at: usize) -> Option<__m128i> {
        let b = hay.get(at..at.checked_add(16)?)?;
        let lo = u64::from_le_bytes(*b.first_chunk::<8>()?);
        let hi = u64::from_le_bytes(*b.last_chunk::<8>()?);
        Some(_mm_set_epi64x(hi as i64, lo as i64))
    }

    /// The bytes of `v` equal to `b`.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn eq(v: __m128i, b: u8) -> __m128i {
        _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8))
    }

    /// The bytes of `v` in `lo..=hi` (unsigned): shifted so that the range starts at -128,
    /// then one signed compare.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn in_range_of(v: __m128i, lo: u8, hi: u8) -> __m128i {
        let shifted = _mm_add_epi8(v, _mm_set1_epi8(0x80u8.wrapping_sub(lo) as i8));
        let bound = 0x80u8.wrapping_add(hi.wrapping_sub(lo).wrapping_add(1)) as i8;
        _mm_cmplt_epi8(shifted, _mm_set1_epi8(bound))
    }

    /// Bit `i` set when byte `i` of `v` is marked.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn mask(v: __m128i) -> u32 {
        _mm_movemask_epi8(v) as u32
    }

    /// The first byte of `hay` that `marked` marks (its bit in the block's mask): `(where,
    /// true)`, else `(bytes read, false)`. A haystack of 16 bytes or more is read whole, its
    /// last partial block as the last 16 bytes with the bytes already read shifted out; a
    /// shorter one is left to the caller's word-at-a-time reading.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn first(hay: &[u8], marked: impl Fn(__m128i) -> u32) -> (usize, bool) {
        let mut at = 0usize;
        while let Some(v) = block(hay, at) {
            let m = marked(v);
            if m != 0 {
                return (at + m.trailing_zeros() as usize, true);
            }
            at += 16;
        }
        let Some(last) = hay.len().checked_sub(16) else {
            return (at, false);
        };
        if at >= hay.len() {
            return (at, false);
        }
        let Some(v) = block(hay, last) else {
            return (at, false);
        };
        // Bit `i` of the shifted mask is byte `at + i` (`last <= at < last + 16`).
        let m = marked(v) >> (at - last);
        match m {
            0 => (hay.len(), false),
            m => (at + m.trailing_zeros() as usize, true),
        }
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn find_in(n: [u8; 3], hay: &[u8]) -> (usize, bool) {
        let [a, b, c] = n;
        match (a == b, b == c) {
            (true, true) => first(hay, |v| mask(eq(v, a))),
            (false, true) => first(hay, |v| mask(_mm_or_si128(eq(v, a), eq(v, b)))),
            _ => first(hay, |v| {
                mask(_mm_or_si128(_mm_or_si128(eq(v, a), eq(v, b)), eq(v, c)))
            }),
        }
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn find4_in(n: [u8; 4], hay: &[u8]) -> (usize, bool) {
        let [a, b, c, d] = n;
        first(hay, |v| {
            let ab = _mm_or_si128(eq(v, a), eq(v, b));
            let cd = _mm_or_si128(eq(v, c), eq(v, d));
            mask(_mm_or_si128(ab, cd))
        })
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn at_most_space_in(hay: &[u8]) -> (usize, bool) {
        first(hay, |v| mask(in_range_of(v, 0, b' ')))
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn line_end_in(hay: &[u8]) -> (usize, bool) {
        first(hay, |v| {
            mask(_mm_or_si128(
                _mm_or_si128(eq(v, b'\n'), eq(v, b'\r')),
                eq(v, 0),
            ))
        })
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn in_range_in(lo: u8, hi: u8, hay: &[u8]) -> (usize, bool) {
        first(hay, |v| mask(in_range_of(v, lo, hi)))
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn alnum_dash_run_in(hay: &[u8]) -> (usize, bool) {
        first(hay, |v| {
            let alpha = in_range_of(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            let digit = in_range_of(v, b'0', b'9');
            !mask(_mm_or_si128(_mm_or_si128(alpha, digit), eq(v, b'-'))) & 0xffff
        })
    }
}

/// The first CR, LF or NUL of `hay` (`memchr::memchr3(b'\n', b'\r', 0, hay)`: where a line
/// ends, RFC 3862 §3.1 / RFC 5322 §2.1), one test a word for any byte below 14 (the three are
/// 0x00, 0x0a and 0x0d), then a look at the byte found; another one (a tab) lets the search go
/// on after it.
#[inline]
pub fn find_line_end(hay: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        let (at, found) = wide::line_end(hay);
        match found {
            true => Some(at),
            false => find_line_end_words(hay.get(at..)?).map(|i| at + i),
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    find_line_end_words(hay)
}

/// [`find_line_end`] a word at a time (the portable reading, and the tail of the vector one).
#[inline]
fn find_line_end_words(hay: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    loop {
        let rest = hay.get(at..)?;
        let found = match rest.get(..8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            Some(w) => {
                let x = u64::from_le_bytes(w);
                // High bit of each byte below 14: its low seven bits plus 0x72 stay below
                // 0x80 (no carry leaves a byte) and its own high bit is clear.
                let below = !(((x & SEVEN) + LO * (0x80 - 14)) | x) & HI;
                if below == 0 {
                    at += 8;
                    continue;
                }
                (below.trailing_zeros() / 8) as usize
            }
            None => rest.iter().position(|b| *b < 14)?,
        };
        let i = at + found;
        match hay.get(i) {
            Some(b'\n' | b'\r' | 0) => return Some(i),
            Some(_) => at = i + 1,
            None => return None,
        }
    }
}

/// High bit of each byte of `x` that is an ASCII letter, digit or `-`: exact per byte (the
/// additions stay within each byte's low seven bits).
#[inline]
fn alnum_dash_bytes(x: u64) -> u64 {
    let v = x & SEVEN;
    // High bit set where the byte's low seven bits are at least `n` (1 <= n <= 0x80).
    let ge = |v: u64, n: u8| (v + LO * u64::from(0x80 - n)) & HI;
    let digit = ge(v, b'0') & !ge(v, b'9' + 1);
    let u = v | (LO * 0x20);
    let alpha = ge(u, b'a') & !ge(u, b'z' + 1);
    let d = v ^ (LO * u64::from(b'-'));
    let dash = !(((d & SEVEN) + SEVEN) | d) & HI;
    (digit | alpha | dash) & !x & HI
}

/// How many bytes at the start of `hay` are ASCII letters, digits or `-` (what most header
/// names are made of), a word at a time.
#[inline]
pub fn alnum_dash_run(hay: &[u8]) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        let (at, found) = wide::alnum_dash_run(hay);
        match found {
            true => at,
            false => at + alnum_dash_run_words(hay.get(at..).unwrap_or_default()),
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    alnum_dash_run_words(hay)
}

/// [`alnum_dash_run`] a word at a time (the portable reading, and the tail of the vector one).
#[inline]
fn alnum_dash_run_words(hay: &[u8]) -> usize {
    let mut at = 0usize;
    while let Some(w) = hay
        .get(at..at.saturating_add(8))
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let other = !alnum_dash_bytes(u64::from_le_bytes(w)) & HI;
        if other != 0 {
            return at + (other.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + hay
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .count()
}

/// The high bits of `m` (one a byte) packed into its low byte, byte `i`'s as bit `i`: the
/// multiplier moves bit `8i` to bit `56 + i`, and no two of its products land on one bit.
#[inline]
fn pack_high_bits(m: u64) -> u64 {
    ((m >> 7) & LO).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// [`LineMarks`] of 64 bytes a word at a time (the portable reading).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline]
fn low_marks_words(w: &[u8; 64]) -> u64 {
    let mut low = 0u64;
    for (k, c) in w.chunks_exact(8).enumerate() {
        let Ok(bytes) = <[u8; 8]>::try_from(c) else {
            continue;
        };
        let x = u64::from_le_bytes(bytes);
        // High bit of each byte below 14, exact per byte (as in `find_line_end_words`).
        let below = !(((x & SEVEN) + LO * (0x80 - 14)) | x) & HI;
        low |= pack_high_bits(below) << (8 * k);
    }
    low
}

/// Where the lines of a text end, as the CPIM reader asks for them line after line (RFC 3862
/// §3.1). The line ends are found in a window of 64 bytes classified at once (SSE2 on x86_64)
/// and kept (a line is ~30 bytes: most lines end in the window the line before left), instead
/// of a search from each colon. The answers are those of [`find_line_end`] for any position,
/// in any order; [`alnum_dash_end`] finds where the names end.
pub struct LineMarks<'a> {
    hay: &'a [u8],
    /// The window: bytes `base..base + 64`, `base` a multiple of 64 (the windows do not
    /// overlap: each byte of the header section is classified once).
    base: usize,
    /// Bit `i`: byte `base + i` is below 14 (CR, LF, NUL and a few others, checked after);
    /// the bits past the end of the text are clear or, for a text shorter than 64 bytes, are
    /// those of NUL bytes (the search finds no byte there and says so).
    low: u64,
}

impl<'a> LineMarks<'a> {
    /// The marks of `hay`, the window at its start.
    #[inline]
    pub fn new(hay: &'a [u8]) -> LineMarks<'a> {
        LineMarks {
            hay,
            base: 0,
            low: window_marks(hay, 0),
        }
    }

    /// [`find_line_end`] of the text from `from`, as a position in the text, with the length
    /// of the line end found there: 2 for CRLF, 1 for LF, 0 for a CR not followed by LF or a
    /// NUL (RFC 3862 §3.1: CRLF ends a line; the readers also take a bare LF).
    #[inline(always)]
    pub fn line_end(&mut self, from: usize) -> Option<(usize, usize)> {
        // The usual line: its CRLF in the window, or in the next one (a line is ~30 bytes);
        // any other end, and a window further on, by the general search.
        let off = from.wrapping_sub(self.base);
        if off < 64 {
            let (mut at, mut bits) = (from, self.low >> off);
            let next = self.base + 64;
            if bits == 0 && next < self.hay.len() {
                self.base = next;
                self.low = window_marks(self.hay, next);
                (at, bits) = (next, self.low);
            }
            if bits != 0 {
                let i = at + bits.trailing_zeros() as usize;
                if let Some([b'\r', b'\n', ..]) = self.hay.get(i..) {
                    return Some((i, 2));
                }
            }
        }
        self.line_end_far(from)
    }

    /// [`line_end`](Self::line_end) of any line: other ends, the windows after.
    #[inline(always)]
    fn line_end_far(&mut self, from: usize) -> Option<(usize, usize)> {
        let mut at = from;
        loop {
            // Also far below the window (wraps): load it there.
            let off = at.wrapping_sub(self.base);
            if off >= 64 {
                if at >= self.hay.len() {
                    return None;
                }
                self.base = at & !63;
                self.low = window_marks(self.hay, self.base);
                continue;
            }
            let bits = self.low >> off;
            if bits == 0 {
                at = self.base + 64;
                continue;
            }
            let i = at + bits.trailing_zeros() as usize;
            match self.hay.get(i..) {
                Some([b'\r', b'\n', ..]) => return Some((i, 2)),
                Some([b'\n', ..]) => return Some((i, 1)),
                Some([b'\r' | 0, ..]) => return Some((i, 0)),
                // Another byte below 14 (a tab): the line goes on.
                Some([_, ..]) => at = i + 1,
                _ => return None,
            }
        }
    }
}

/// `from` plus [`alnum_dash_run`] of `hay` from `from`: where a name of ASCII letters, digits
/// and `-` starting there ends (the text's length when it runs to the end). A function of the
/// text alone (not of [`LineMarks`]: the reader's window stays in registers).
#[inline(always)]
pub fn alnum_dash_end(hay: &[u8], from: usize) -> usize {
    // A name is usually shorter than 32 bytes (`Disposition-Notification` is 24): one or two
    // blocks say where it ends (inlined in the reader's loop; the longer search, and the one
    // near the end of the text, is a call).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    match wide::not_name_block(hay, from) {
        Some(m @ 1..) => return from + m.trailing_zeros() as usize,
        Some(0) => {
            if let Some(m @ 1..) = wide::not_name_block(hay, from.saturating_add(16)) {
                return from + 16 + m.trailing_zeros() as usize;
            }
        }
        _ => {}
    }
    alnum_dash_end_far(hay, from)
}

/// [`alnum_dash_end`] by [`alnum_dash_run`].
#[inline(never)]
fn alnum_dash_end_far(hay: &[u8], from: usize) -> usize {
    from + alnum_dash_run(hay.get(from..).unwrap_or_default())
}

/// The mask of [`LineMarks`] for 64 bytes.
#[inline]
fn low64(w: &[u8; 64]) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return wide::low_marks(w);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    low_marks_words(w)
}

/// The mask of [`LineMarks`] for the window at `base` (a multiple of 64 below the text's
/// length): the 64 bytes there read at once when the text has them.
#[inline(always)]
fn window_marks(hay: &[u8], base: usize) -> u64 {
    match hay.get(base..).and_then(|w| w.first_chunk::<64>()) {
        Some(w) => low64(w),
        None => tail_marks(hay, base),
    }
}

/// [`window_marks`] of the last window, shorter than 64 bytes: the last 64 bytes of the text
/// read (no byte past its end) and those before `base` shifted out, so the bits past the end
/// are clear; a text shorter than 64 bytes is copied, followed by NUL bytes.
#[inline(never)]
fn tail_marks(hay: &[u8], base: usize) -> u64 {
    match hay.len().checked_sub(64) {
        Some(last) => {
            let w = hay.get(last..).and_then(|w| w.first_chunk::<64>());
            match (w, base.checked_sub(last)) {
                (Some(w), Some(skip @ 0..64)) => low64(w) >> skip,
                _ => 0,
            }
        }
        None => {
            let rest = hay.get(base..).unwrap_or_default();
            let mut w = [0u8; 64];
            if let Some(head) = w.get_mut(..rest.len()) {
                head.copy_from_slice(rest);
            }
            low64(&w)
        }
    }
}

/// The first byte of `hay` in `lo..=hi` (ASCII bounds, `lo >= 1`), a word at a time: one range
/// test per word (exact per byte, as [`alnum_dash_bytes`]), the bytes of a short tail one by
/// one. For a scan where most bytes are of no interest and the few that are form one range
/// (`:` to `Z` holds `: ; < = > ? @` and the upper-case letters, what an address of record is
/// read for).
#[inline]
pub fn find_in_range(lo: u8, hi: u8, hay: &[u8]) -> Option<usize> {
    debug_assert!(lo >= 1 && lo <= hi && hi < 0x80);
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        let (at, found) = wide::in_range(lo, hi, hay);
        match found {
            true => Some(at),
            false => find_in_range_words(lo, hi, hay.get(at..)?).map(|i| at + i),
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    find_in_range_words(lo, hi, hay)
}

/// [`find_in_range`] a word at a time (the portable reading, and the tail of the vector one).
#[inline]
fn find_in_range_words(lo: u8, hi: u8, hay: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    while let Some(w) = hay
        .get(at..at.saturating_add(8))
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let x = u64::from_le_bytes(w);
        let v = x & SEVEN;
        // High bit set where the byte's low seven bits are at least `n` (1 <= n <= 0x80).
        let ge = |n: u8| (v + LO * u64::from(0x80 - n)) & HI;
        let hit = ge(lo) & !ge(hi + 1) & !x & HI;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    hay.get(at..)?
        .iter()
        .position(|b| (lo..=hi).contains(b))
        .map(|i| at + i)
}

/// Bit `i` set when byte `at + i` of `hay` is in `lo..=hi` (unsigned), for the 16 bytes from
/// `at`, read at once with SSE2; `None` when `hay` has fewer than 16 bytes there, and always
/// on targets without SSE2 (the caller then reads words).
#[inline]
pub fn range_block(hay: &[u8], at: usize, lo: u8, hi: u8) -> Option<u32> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return wide::range_block(hay, at, lo, hi);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        let _ = (hay, at, lo, hi);
        None
    }
}

/// Whether `hay` has a byte at or below SP (white space, CR, LF, NUL or another control
/// byte: what a Request-URI may not hold), 16 bytes at a time on x86_64, else a word at a time.
#[inline]
pub fn has_space_or_control(hay: &[u8]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        let (at, found) = wide::at_most_space(hay);
        found || has_space_or_control_words(hay.get(at..).unwrap_or_default())
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    has_space_or_control_words(hay)
}

/// [`has_space_or_control`] a word at a time.
#[inline]
fn has_space_or_control_words(hay: &[u8]) -> bool {
    let mut words = hay.chunks_exact(8);
    for w in &mut words {
        let Ok(w) = <[u8; 8]>::try_from(w) else {
            break;
        };
        let x = u64::from_le_bytes(w);
        // High bit of each byte below 0x21, as in `find_line_end`.
        if !(((x & SEVEN) + LO * (0x80 - 0x21)) | x) & HI != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|b| *b <= b' ')
}

/// `memchr::memrchr`, a plain loop on short haystacks.
#[inline]
pub fn rfind_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() > SHORT {
        return memchr::memrchr(needle, hay);
    }
    hay.iter().rposition(|b| *b == needle)
}

/// Split a header line `Name: value` at its first colon. The name is returned without
/// surrounding white space, the value with leading and trailing white space (SP / HTAB)
/// removed. `None` when there is no colon or the name is empty.
#[inline]
pub fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = find_byte(b':', line)?;
    let name = trim_ws(line.get(..colon)?);
    if name.is_empty() {
        return None;
    }
    Some((name, trim_ws(line.get(colon + 1..)?)))
}

/// `s` without leading and trailing SP / HTAB.
#[inline]
pub fn trim_ws(s: &[u8]) -> &[u8] {
    // Slice patterns from each end (one length test and one byte compare a step, no index to
    // check): the usual value has one space before it (`Name: value`) and none after.
    let mut s = s;
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether a Content-Type value names the media type `media` (`type/subtype`), parameters
/// (`;charset=...`) and case ignored (RFC 2045 §5.1).
#[inline]
pub fn media_type_is(content_type: &[u8], media: &str) -> bool {
    content_type
        .split(|b| *b == b';')
        .next()
        .map(trim_ws)
        .is_some_and(|m| m.eq_ignore_ascii_case(media.as_bytes()))
}

/// 1-based line and column of byte `offset` in `input`, for error messages that say where.
/// An offset past the end reports the position just after the last byte.
pub fn line_col(input: &[u8], offset: usize) -> (usize, usize) {
    let upto = input.get(..offset).unwrap_or(input);
    let line = memchr::memchr_iter(b'\n', upto).count() + 1;
    let col = match memchr::memrchr(b'\n', upto) {
        Some(nl) => upto.len() - nl,
        None => upto.len() + 1,
    };
    (line, col)
}

/// `b` as text when it is ASCII (the usual id, URI or tag), found by the standard library's
/// word-at-a-time test: on short text several times cheaper than the full UTF-8 check, which
/// the caller makes when this says `None`.
#[inline]
pub fn ascii_str(b: &[u8]) -> Option<&str> {
    if !b.is_ascii() {
        return None;
    }
    // SAFETY: every ASCII byte sequence is valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(b) })
}

#[cfg(test)]
mod ascii_tests {
    proptest::proptest! {
        // Text exactly when the bytes are ASCII, and then the same text as the UTF-8 reading.
        #[test]
        fn ascii_str_is_the_ascii_utf8(b in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let want = std::str::from_utf8(&b).ok().filter(|s| s.is_ascii());
            proptest::prop_assert_eq!(super::ascii_str(&b), want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // The word-at-a-time searches find what memchr finds, at every length and alignment.
        #[test]
        fn short_searches_are_memchr(
            hay in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'a'), proptest::strategy::Just(b';'),
                proptest::strategy::Just(b'<'), proptest::strategy::Just(0u8),
                proptest::strategy::Just(0x80u8), proptest::strategy::Just(0xffu8),
                proptest::strategy::Just(1u8), proptest::num::u8::ANY,
            ], 0..200),
            skip in 0usize..8,
        ) {
            let hay = hay.get(skip.min(hay.len())..).unwrap_or_default();
            for (a, b, c) in [(b';', b'<', 0u8), (0, 0x80, 0xff), (1, b'a', b';')] {
                proptest::prop_assert_eq!(find_byte(a, hay), memchr::memchr(a, hay));
                // The portable reading (the vector one above on x86_64).
                let (na, nb) = (LO.wrapping_mul(u64::from(a)), LO.wrapping_mul(u64::from(b)));
                proptest::prop_assert_eq!(
                    near_then_far(hay, |w| zero_bytes(w ^ na), |x| x == a, |r| memchr::memchr(a, r)),
                    memchr::memchr(a, hay)
                );
                proptest::prop_assert_eq!(
                    near_then_far(
                        hay,
                        |w| zero_bytes(w ^ na) | zero_bytes(w ^ nb),
                        |x| x == a || x == b,
                        |r| memchr::memchr2(a, b, r)
                    ),
                    memchr::memchr2(a, b, hay)
                );
                proptest::prop_assert_eq!(find_byte2(a, b, hay), memchr::memchr2(a, b, hay));
                proptest::prop_assert_eq!(
                    find_byte3(a, b, c, hay),
                    memchr::memchr3(a, b, c, hay)
                );
                proptest::prop_assert_eq!(rfind_byte(a, hay), memchr::memrchr(a, hay));

                let four = hay.iter().position(|x| [a, b, c, b'"'].contains(x));
                proptest::prop_assert_eq!(find_byte4(a, b, c, b'"', hay), four);
                let nc = LO.wrapping_mul(u64::from(c));
                let nq = LO.wrapping_mul(u64::from(b'"'));
                proptest::prop_assert_eq!(
                    find_short(
                        hay,
                        |w| zero_bytes(w ^ na) | zero_bytes(w ^ nb) | zero_bytes(w ^ nc)
                            | zero_bytes(w ^ nq),
                        |x| [a, b, c, b'"'].contains(&x)
                    ),
                    four
                );
            }
        }
    }

    proptest::proptest! {
        // The word-at-a-time line end and name run read what the byte loops read, with the
        // bytes at the edges of each class (and the same with the high bit set).
        #[test]
        fn line_end_and_name_run_are_the_byte_loops(
            hay in proptest::collection::vec(proptest::prop_oneof![
                proptest::sample::select(b"\n\r\t\x00\x0d\x0e-.:/09@AZ[`az{ \x7f".to_vec()),
                proptest::sample::select(vec![0x8a_u8, 0x8d, 0x80, 0xad, 0xb0, 0xc1, 0xe1, 0xff]),
                proptest::num::u8::ANY,
                proptest::strategy::Just(b'a'),
            ], 0..120),
            skip in 0usize..8,
        ) {
            let hay = hay.get(skip.min(hay.len())..).unwrap_or_default();
            let space = hay.iter().any(|b| *b <= b' ');
            proptest::prop_assert_eq!(has_space_or_control(hay), space);
            proptest::prop_assert_eq!(has_space_or_control_words(hay), space);
            let line_end = memchr::memchr3(b'\n', b'\r', 0, hay);
            let run = hay.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'-').count();
            // The vector reading (on x86_64) and the portable one.
            proptest::prop_assert_eq!(find_line_end(hay), line_end);
            proptest::prop_assert_eq!(find_line_end_words(hay), line_end);
            proptest::prop_assert_eq!(alnum_dash_run(hay), run);
            proptest::prop_assert_eq!(alnum_dash_run_words(hay), run);
            let start = hay.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(hay.len());
            let end = hay.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(start, |i| i + 1);
            proptest::prop_assert_eq!(trim_ws(hay), &hay[start..end]);
            for (lo, hi) in [(b':', b'Z'), (b'0', b'9'), (1, 0x7f), (b'a', b'a')] {
                let want = hay.iter().position(|b| (lo..=hi).contains(b));
                proptest::prop_assert_eq!(find_in_range(lo, hi, hay), want);
                proptest::prop_assert_eq!(find_in_range_words(lo, hi, hay), want);
            }
        }
    }

    /// The mask of [`LineMarks`] byte by byte.
    fn low_bytes(w: &[u8; 64]) -> u64 {
        w.iter()
            .enumerate()
            .filter(|(_, b)| **b < 14)
            .fold(0u64, |m, (i, _)| m | 1 << i)
    }

    /// Every answer of `m` for `hay` at the positions `froms` (in that order) is the one of
    /// the two searches it stands for.
    fn marks_answer_as_searches(hay: &[u8], froms: &[usize]) {
        let mut m = LineMarks::new(hay);
        for &from in froms {
            let rest = hay.get(from..).unwrap_or_default();
            assert_eq!(
                alnum_dash_end(hay, from),
                from + alnum_dash_run(rest),
                "name end from {from} in {hay:?}"
            );
            let want = memchr::memchr3(b'\n', b'\r', 0, rest).map(|i| from + i);
            assert_eq!(
                m.line_end(from),
                want.map(|i| match (hay[i], hay.get(i + 1)) {
                    (b'\r', Some(b'\n')) => (i, 2),
                    (b'\n', _) => (i, 1),
                    _ => (i, 0),
                }),
                "line end from {from} in {hay:?}"
            );
        }
    }

    proptest::proptest! {
        // The window of marks answers as the searches do, for positions asked in order (the
        // CPIM reader's use) and in any order, and its masks are the bytes' classes in both
        // readings (the vector one on x86_64 and the portable one).
        #[test]
        fn line_marks_are_the_searches(
            hay in proptest::collection::vec(proptest::prop_oneof![
                proptest::sample::select(b"\n\r\t\x00-.:/09@AZ[`az{ \x7f".to_vec()),
                proptest::sample::select(vec![0x8a_u8, 0x8d, 0x80, 0xad, 0xb0, 0xc1, 0xe1, 0xff]),
                proptest::num::u8::ANY,
                proptest::strategy::Just(b'a'),
            ], 0..300),
            mut froms in proptest::collection::vec(0usize..320, 0..12),
        ) {
            marks_answer_as_searches(&hay, &froms);
            froms.sort_unstable();
            marks_answer_as_searches(&hay, &froms);
            for w in hay.chunks(64) {
                let mut block = [0u8; 64];
                block[..w.len()].copy_from_slice(w);
                proptest::prop_assert_eq!(low64(&block), low_bytes(&block));
                proptest::prop_assert_eq!(low_marks_words(&block), low_bytes(&block));
            }
        }
    }

    proptest::proptest! {
        // The reader's order: each search from the start of the line after the last end, the
        // lines of any length (ends in the window, in the next one, further on, a CRLF split
        // across two windows), ends CRLF, LF, a CR alone, NUL, a tab inside.
        #[test]
        fn line_marks_walked_line_by_line(
            lines in proptest::collection::vec(
                (0usize..150, proptest::sample::select(vec!["\r\n", "\n", "\r", "\x00", "\t", ""])),
                0..20,
            ),
        ) {
            let mut hay = Vec::new();
            for (len, end) in &lines {
                hay.extend(std::iter::repeat_n(b'v', *len));
                hay.extend_from_slice(end.as_bytes());
            }
            let mut froms = vec![0usize];
            let mut at = 0usize;
            while let Some(i) = memchr::memchr3(b'\n', b'\r', 0, hay.get(at..).unwrap_or_default()) {
                at += i + 1;
                froms.push(at);
            }
            marks_answer_as_searches(&hay, &froms);
        }
    }

    #[test]
    fn line_marks_at_the_edges() {
        // Names and line ends at and across the 16-byte blocks and the 64-byte window, LF-only
        // ends, a CR alone, bytes with the high bit set, a text shorter than a block, the end.
        let mut long = b"imdn.Disposition-Notification: positive-delivery, display\r\n".to_vec();
        long.extend_from_slice(b"Content-Type: text/plain\n\xe9\xff-\x80:\r x\n");
        for hay in [
            &long[..],
            b"0123456789abcdef: sixteen\n",
            b"0123456789abcde.f: x\rz\n",
            &[b'a'; 64][..],
            &[b'a'; 65][..],
            &[b'a'; 63][..],
            b"From: x\n\nbody",
            b"a\xc3\xa9b: v\r",
            b"x",
            b"",
        ] {
            let all: Vec<usize> = (0..=hay.len() + 1).collect();
            marks_answer_as_searches(hay, &all);
            marks_answer_as_searches(hay, &[0, 64, 0, 16, 15, 63, 65, 1]);
        }
        let mut m = LineMarks::new(&long);
        assert_eq!(alnum_dash_end(&long, 0), 4);
        assert_eq!(
            LineMarks::new(b"\t\t\t\t\t\t\t\ta\tb\x0b\x0c\rc").line_end(0),
            Some((13, 0))
        );
        assert_eq!(alnum_dash_end(&long, 5), 29);
        assert_eq!(m.line_end(30), Some((57, 2)));
        assert_eq!(alnum_dash_end(&long, 59), 71);
        assert_eq!(m.line_end(72), Some((83, 1)));
        assert_eq!(alnum_dash_end(&long, 84), 84);
        assert_eq!(m.line_end(84), Some((89, 0)));
        assert_eq!(pack_high_bits(HI), 0xff);
        assert_eq!(pack_high_bits(0x8000_0000_0000_0080), 0x81);
    }

    #[test]
    fn header_split_trims_both_sides() {
        assert_eq!(
            split_header(b"To-Path : msrp://a ").map(|(n, v)| (n.to_vec(), v.to_vec())),
            Some((b"To-Path".to_vec(), b"msrp://a".to_vec()))
        );
        assert_eq!(split_header(b"no colon"), None);
        assert_eq!(split_header(b": value"), None);
        assert_eq!(split_header(b"Empty:").map(|(_, v)| v.len()), Some(0));
    }

    #[test]
    fn crlf_and_blank_line() {
        let b = b"a\r\nb\r\n\r\nbody";
        assert_eq!(find_crlf(b, 0), Some(1));
        assert_eq!(find_crlf(b, 2), Some(4));
        assert_eq!(find_blank_line(b, 0), Some(4));
        assert_eq!(find_crlf(b, 100), None);
    }

    #[test]
    fn positions_are_one_based() {
        let b = b"ab\ncd\nef";
        assert_eq!(line_col(b, 0), (1, 1));
        assert_eq!(line_col(b, 4), (2, 2));
        assert_eq!(line_col(b, 99), (3, 3));
        assert_eq!(trim_ws(b" \t "), b"");
    }

    #[test]
    fn trim_ws_is_the_position_reading() {
        // Every string of up to six bytes of SP, HTAB, `a` and `\r`: the slice-pattern loops
        // read what the `position` / `rposition` reading reads.
        let alphabet = [b' ', b'\t', b'a', b'\r'];
        for len in 0..=6u32 {
            for n in 0..4usize.pow(len) {
                let s: Vec<u8> = (0..len).map(|k| alphabet[n / 4usize.pow(k) % 4]).collect();
                let start = s.iter().position(|b| !is_ws(*b)).unwrap_or(s.len());
                let end = s.iter().rposition(|b| !is_ws(*b)).map_or(start, |i| i + 1);
                assert_eq!(trim_ws(&s), &s[start..end], "{s:?}");
            }
        }
    }

    #[test]
    fn media_types_compare_without_parameters_or_case() {
        assert!(media_type_is(b"Message/CPIM", "message/cpim"));
        assert!(media_type_is(b" text/plain ;charset=UTF-8", "text/plain"));
        assert!(!media_type_is(b"text/plainer", "text/plain"));
        assert!(!media_type_is(b"", "text/plain"));
    }
}
