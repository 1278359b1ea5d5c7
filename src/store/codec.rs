//! The stored record of a [`StoredMessage`]: a small length-prefixed binary layout, the same in
//! both backends (so a record can move between them), versioned by its first byte.
//!
//! ```text
//! version(1)=1 kind(1) side(1) received_at(u64 LE) expires_at(u64 LE)
//! then 9 fields, each u32 LE length + bytes, u32::MAX = absent:
//! recipient payload message_id conversation_id contribution_id date_time
//! sender.aor sender.gruu sender.instance
//! ```
//!
//! Decoding takes a `Bytes` and returns slices of it (no copy per field); a record that does not
//! decode is [`StoreError::Corrupt`], never a panic.

use bytes::{BufMut, Bytes};

use super::{Kind, Result, StoreError, StoredMessage};
use crate::translate::state::{Device, Side};

const VERSION: u8 = 1;
const ABSENT: u32 = u32::MAX;
const HEADER: usize = 3 + 8 + 8;

/// The record's length, without building it.
pub fn encoded_len(message: &StoredMessage) -> usize {
    let opt = |v: &Option<Bytes>| v.as_ref().map_or(0, Bytes::len);
    HEADER
        + 9 * 4
        + message.recipient.len()
        + message.payload.len()
        + opt(&message.message_id)
        + opt(&message.conversation_id)
        + opt(&message.contribution_id)
        + opt(&message.date_time)
        + message.sender.aor.len()
        + opt(&message.sender.gruu)
        + opt(&message.sender.instance)
}

/// The record of `message`. Field lengths must fit in a u32 (the store's limits see to it).
pub fn encode_message(message: &StoredMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(message));
    out.put_u8(VERSION);
    out.put_u8(message.kind.code());
    out.put_u8(match message.to_side {
        Side::Cpm => 1,
        Side::Simple => 2,
    });
    out.put_u64_le(message.received_at_unix_ms);
    out.put_u64_le(message.expires_at_unix_ms);
    let mut field = |value: Option<&Bytes>| match value {
        Some(v) => {
            // Limits keep fields far below 4 GiB; saturate rather than wrap if misused.
            out.put_u32_le(u32::try_from(v.len()).unwrap_or(ABSENT - 1));
            out.put_slice(v);
        }
        None => out.put_u32_le(ABSENT),
    };
    field(Some(&message.recipient));
    field(Some(&message.payload));
    field(message.message_id.as_ref());
    field(message.conversation_id.as_ref());
    field(message.contribution_id.as_ref());
    field(message.date_time.as_ref());
    field(Some(&message.sender.aor));
    field(message.sender.gruu.as_ref());
    field(message.sender.instance.as_ref());
    out
}

struct Reader {
    bytes: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(StoreError::Corrupt("record truncated"))?;
        let out = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        let b = self.take(1)?;
        b.first()
            .copied()
            .ok_or(StoreError::Corrupt("record truncated"))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        let arr: [u8; 4] = b
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt("record truncated"))?;
        Ok(u32::from_le_bytes(arr))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let arr: [u8; 8] = b
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt("record truncated"))?;
        Ok(u64::from_le_bytes(arr))
    }

    fn field(&mut self) -> Result<Option<Bytes>> {
        let len = self.u32()?;
        if len == ABSENT {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| StoreError::Corrupt("field length"))?;
        self.take(len).map(Some)
    }

    fn required(&mut self) -> Result<Bytes> {
        self.field()?
            .ok_or(StoreError::Corrupt("required field absent"))
    }
}

/// The message in a record.
pub fn decode_message(bytes: Bytes) -> Result<StoredMessage> {
    let mut r = Reader { bytes, at: 0 };
    if r.u8()? != VERSION {
        return Err(StoreError::Corrupt("unknown record version"));
    }
    let kind = Kind::from_code(r.u8()?).ok_or(StoreError::Corrupt("unknown kind"))?;
    let to_side = match r.u8()? {
        1 => Side::Cpm,
        2 => Side::Simple,
        _ => return Err(StoreError::Corrupt("unknown side")),
    };
    let received_at_unix_ms = r.u64()?;
    let expires_at_unix_ms = r.u64()?;
    let recipient = r.required()?;
    let payload = r.required()?;
    let message_id = r.field()?;
    let conversation_id = r.field()?;
    let contribution_id = r.field()?;
    let date_time = r.field()?;
    let aor = r.required()?;
    let gruu = r.field()?;
    let instance = r.field()?;
    if r.at != r.bytes.len() {
        return Err(StoreError::Corrupt("trailing bytes"));
    }
    Ok(StoredMessage {
        recipient,
        to_side,
        kind,
        payload,
        message_id,
        conversation_id,
        contribution_id,
        date_time,
        received_at_unix_ms,
        expires_at_unix_ms,
        sender: Device {
            aor,
            gruu,
            instance,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::message;

    #[test]
    fn round_trip() {
        let mut m = message(
            "sip:bob@simple.example",
            Some("id-1"),
            "MESSAGE sip:bob SIP/2.0\r\n",
        );
        m.kind = Kind::Imdn;
        m.to_side = Side::Cpm;
        let bytes = encode_message(&m);
        assert_eq!(bytes.len(), encoded_len(&m));
        assert_eq!(decode_message(Bytes::from(bytes)).unwrap(), m);
        let m2 = message("sip:b@x", None, "");
        let bytes = encode_message(&m2);
        assert_eq!(decode_message(Bytes::from(bytes)).unwrap(), m2);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let m = message("sip:bob@simple.example", Some("id-1"), "hello");
        let bytes = Bytes::from(encode_message(&m));
        for cut in 0..bytes.len() {
            assert!(decode_message(bytes.slice(..cut)).is_err(), "cut {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode_message(Bytes::from(longer)).is_err());
    }

    fn opt(v: Option<Vec<u8>>) -> Option<Bytes> {
        v.map(Bytes::from)
    }

    proptest::proptest! {
        #[test]
        fn any_message_round_trips(
            rec in proptest::collection::vec(proptest::num::u8::ANY, 1..40),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            id in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
            conv in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
            gruu in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
            kind in 1u8..=4,
            side in proptest::bool::ANY,
            times in (proptest::num::u64::ANY, proptest::num::u64::ANY),
        ) {
            let m = StoredMessage {
                recipient: Bytes::from(rec),
                to_side: if side { Side::Cpm } else { Side::Simple },
                kind: Kind::from_code(kind).unwrap(),
                payload: Bytes::from(payload),
                message_id: opt(id),
                conversation_id: opt(conv.clone()),
                contribution_id: opt(conv),
                date_time: None,
                received_at_unix_ms: times.0,
                expires_at_unix_ms: times.1,
                sender: Device { aor: Bytes::from_static(b"sip:a@x"), gruu: opt(gruu), instance: None },
            };
            let bytes = encode_message(&m);
            proptest::prop_assert_eq!(bytes.len(), encoded_len(&m));
            proptest::prop_assert_eq!(decode_message(Bytes::from(bytes)).unwrap(), m);
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode_message(Bytes::from(bytes));
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic generator: every byte value in every position of a short
        // record, and lengths that point past the end.
        let m = message("sip:b@x", Some("i"), "p");
        let base = encode_message(&m);
        for pos in 0..base.len() {
            for v in [0u8, 1, 2, 5, 0x7f, 0xfe, 0xff] {
                let mut b = base.clone();
                if let Some(slot) = b.get_mut(pos) {
                    *slot = v;
                }
                let _ = decode_message(Bytes::from(b));
            }
        }
    }
}
