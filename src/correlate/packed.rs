//! Dialog entries stored as one buffer each (issue 9: bytes per held session).
//!
//! A [`DialogPeer`] is eleven `Bytes` fields (32 B each) and a few small ones: boxed in the
//! table it was a ~370 B allocation, plus one allocation (and, once cloned, one shared header)
//! per field, each a separate heap chunk. A chat session keeps two for its life. Packed, an
//! entry is one buffer of exactly the fields' bytes and a header of a few bytes; a read slices
//! it (`Bytes::slice`: reference counts, no copy), so a read costs less than cloning the boxed
//! value did.
//!
//! Layout: service index, `a=setup` code, CSeq (4 bytes, little-endian), then each byte field
//! in a fixed order as a LEB128 length (`0`: absent, `n + 1`: `n` bytes follow) and its bytes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::mapping::Service;
use crate::translate::state::{ConversationIds, DialogPeer, LegDialog};
use crate::wire::sdp::Setup;

/// A [`DialogPeer`] in one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedDialog(Bytes);

const HEADER: usize = 6;

impl PackedDialog {
    /// The peer in one buffer of exactly its size.
    pub fn pack(p: &DialogPeer) -> PackedDialog {
        let conv = p.conversation.as_ref();
        let fields: [Option<&Bytes>; 11] = [
            Some(&p.call_id),
            conv.map(|c| &c.conversation_id),
            conv.map(|c| &c.contribution_id),
            conv.and_then(|c| c.in_reply_to.as_ref()),
            p.msrp_session.as_ref(),
            Some(&p.leg.local_tag),
            p.leg.remote_tag.as_ref(),
            Some(&p.leg.local_uri),
            Some(&p.leg.remote_uri),
            Some(&p.leg.remote_target),
            p.leg.route_set.as_ref(),
        ];
        let len = HEADER
            + fields
                .iter()
                .map(|f| f.map_or(1, |b| varint_len(b.len() as u64 + 1) + b.len()))
                .sum::<usize>();
        let mut buf = BytesMut::with_capacity(len);
        let service = Service::ALL
            .iter()
            .position(|s| *s == p.service)
            .unwrap_or(0);
        buf.put_u8(u8::try_from(service).unwrap_or(0));
        buf.put_u8(setup_code(p.leg.msrp_setup));
        buf.put_u32_le(p.leg.local_cseq);
        for f in fields {
            match f {
                None => buf.put_u8(0),
                Some(b) => {
                    put_varint(&mut buf, b.len() as u64 + 1);
                    buf.put_slice(b);
                }
            }
        }
        PackedDialog(buf.freeze())
    }

    /// The peer, its fields slices of the buffer. `None` only if the buffer is not one
    /// [`PackedDialog::pack`] wrote (it always is: the type is only built there).
    pub fn unpack(&self) -> Option<DialogPeer> {
        let b = &self.0;
        let service = *Service::ALL.get(usize::from(*b.first()?))?;
        let msrp_setup = setup_of(*b.get(1)?);
        let local_cseq = u32::from_le_bytes(b.get(2..HEADER)?.try_into().ok()?);
        let mut at = HEADER;
        let mut next = || -> Option<Option<Bytes>> {
            let (n, used) = get_varint(b.get(at..)?)?;
            at += used;
            if n == 0 {
                return Some(None);
            }
            let len = usize::try_from(n - 1).ok()?;
            let end = at.checked_add(len).filter(|e| *e <= b.len())?;
            let field = b.slice(at..end);
            at = end;
            Some(Some(field))
        };
        let call_id = next()??;
        let conversation_id = next()?;
        let contribution_id = next()?;
        let in_reply_to = next()?;
        let msrp_session = next()?;
        let local_tag = next()??;
        let remote_tag = next()?;
        let local_uri = next()??;
        let remote_uri = next()??;
        let remote_target = next()??;
        let route_set = next()?;
        let conversation = match (conversation_id, contribution_id) {
            (Some(conversation_id), Some(contribution_id)) => Some(ConversationIds {
                conversation_id,
                contribution_id,
                in_reply_to,
            }),
            _ => None,
        };
        Some(DialogPeer {
            call_id,
            conversation,
            msrp_session,
            service,
            leg: LegDialog {
                local_tag,
                remote_tag,
                local_uri,
                remote_uri,
                remote_target,
                route_set,
                local_cseq,
                msrp_setup,
            },
        })
    }

    /// Bytes the entry holds on the heap (for tests).
    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.0.len()
    }
}

fn setup_code(s: Option<Setup>) -> u8 {
    match s {
        None => 0,
        Some(Setup::Active) => 1,
        Some(Setup::Passive) => 2,
        Some(Setup::Actpass) => 3,
        Some(Setup::Holdconn) => 4,
    }
}

fn setup_of(code: u8) -> Option<Setup> {
    match code {
        1 => Some(Setup::Active),
        2 => Some(Setup::Passive),
        3 => Some(Setup::Actpass),
        4 => Some(Setup::Holdconn),
        _ => None,
    }
}

fn varint_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(buf: &mut BytesMut, mut n: u64) {
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

/// A LEB128 value and the bytes it took; `None` when cut short or longer than a `u64`.
fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        n |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> DialogPeer {
        DialogPeer {
            call_id: Bytes::from_static(b"a84b4c76e66710@pc33.cpm.example"),
            conversation: Some(ConversationIds {
                conversation_id: Bytes::from_static(b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
                contribution_id: Bytes::from_static(b"abcdef-1234"),
                in_reply_to: None,
            }),
            msrp_session: Some(Bytes::from_static(b"7b2c0f1e9a3d4c55")),
            service: Service::Chat,
            leg: LegDialog {
                local_tag: Bytes::from_static(b"1928301774"),
                remote_tag: Some(Bytes::new()),
                local_uri: Bytes::from_static(b"<sip:alice@cpm.example>"),
                remote_uri: Bytes::from_static(b"<sip:bob@simple.example>"),
                remote_target: Bytes::from(vec![b'x'; 300]),
                route_set: None,
                local_cseq: 0x1234_5678,
                msrp_setup: Some(Setup::Passive),
            },
        }
    }

    #[test]
    fn a_dialog_comes_back_as_it_went_in() {
        let p = peer();
        let packed = PackedDialog::pack(&p);
        assert_eq!(packed.unpack(), Some(p.clone()));
        // Every service, every setup, absent fields, an empty present one (kept apart from
        // an absent one), a field whose length takes two LEB128 bytes.
        for service in Service::ALL {
            for setup in [
                None,
                Some(Setup::Active),
                Some(Setup::Actpass),
                Some(Setup::Holdconn),
            ] {
                let mut q = p.clone();
                q.service = service;
                q.leg.msrp_setup = setup;
                q.conversation = None;
                q.msrp_session = None;
                q.leg.route_set = Some(Bytes::from_static(b"<sip:p1.example;lr>"));
                assert_eq!(PackedDialog::pack(&q).unpack(), Some(q));
            }
        }
    }

    #[test]
    fn a_packed_dialog_is_its_bytes_and_a_few_more() {
        let p = peer();
        let fields = 31 + 36 + 11 + 16 + 10 + 23 + 24 + 300;
        let packed = PackedDialog::pack(&p);
        // Header 6, one length byte per field (two for the 300-byte one).
        assert_eq!(packed.heap_len(), fields + 6 + 11 + 1);
        assert_eq!(size_of::<PackedDialog>(), 32);
    }

    #[test]
    fn a_cut_buffer_reads_as_nothing_not_a_panic() {
        let packed = PackedDialog::pack(&peer());
        for n in 0..packed.0.len() {
            let cut = PackedDialog(packed.0.slice(..n));
            assert_eq!(cut.unpack(), None, "cut at {n}");
        }
        assert_eq!(get_varint(&[0xff; 11]), None);
    }
}
