//! The objects cpm-iwf writes into a user's Message Storage Server: RFC 5322 messages, one per
//! standalone message and one per chat session.
//!
//! # Layout chosen, and why
//! OMA CPM 2.0 SD 5.2.1.2 asks that every recorded object carry the Conversation-ID,
//! Contribution-ID and InReplyTo-Contribution-ID received; OMA-TS-CPM_MessageStorage-V2_0 (§5,
//! "CPM objects") and GSMA RCC.09 (its RCS endorsement) store CPM objects as RFC 5322 messages
//! in IMAP folders, a folder per conversation, with the CPM identities as RFC 5322 header
//! fields (so that an IMAP client can `SEARCH HEADER Conversation-ID ...`). We follow that:
//!
//! * **Standalone message** (SD 5.2.1.2.1): `From`, `To`, `Date` (the time the node saw it,
//!   RFC 5322 §3.3), `Conversation-ID`, `Contribution-ID`, `InReplyTo-Contribution-ID` (when
//!   received), `IMDN-Message-ID` (the CPIM `imdn.Message-ID`, RFC 5438 §6.3), `Message-ID`
//!   (our own RFC 5322 identity of the object: the node finds the object by it to delete it
//!   after a failed delivery), `Message-Direction` (`sent`/`received`, from the recorded
//!   user's side (verify the name against MessageStorage §5.2)), `MIME-Version`, and the
//!   message's own `Content-Type`: `Message/CPIM` for a CPIM body, kept byte for byte, so the
//!   IMDN request and the CPIM namespaces survive.
//! * **Chat session history** (SD 5.2.1.2.3): the same top header fields with the session's
//!   identities, `From` the inviting user, `To` the invited users, `Date` the establishment,
//!   and `Content-Type: Multipart/Related; type="Application/X-CPM-Session"` (RFC 2387): a
//!   first part `Application/X-CPM-Session` with the session information (XML: establishment
//!   time, inviting user, invited users), then one `Message/CPIM` part per chat message and per
//!   disposition notification, in the order the node relayed them, each with its own
//!   `Date`, `IMDN-Message-ID` and `Message-Direction`.
//! * **Large message** (SD 5.2.1.2.1, large message mode: an MSRP session with the
//!   `cpm.largemsg` ICSI): each whole (reassembled) message is a standalone object as above,
//!   with the session's identities, recorded when the session ends.
//! * A body that is not 7-bit-clean text (NUL, bare CR or LF, non-UTF-8) is written base64
//!   (RFC 2045 §6.8) so that every IMAP server accepts the APPEND (RFC 9051 §4.3: no NUL in a
//!   literal without BINARY).
//! * Folder: the Conversation-ID with every byte outside `[A-Za-z0-9_-]` as `_` (IMAP
//!   hierarchy separators differ between servers, `.` for Dovecot's Maildir); `no-conversation`
//!   when the message had none.
//!
//! Header values come from the network: CR and LF are replaced by spaces so a value can never
//! start a header field of its own.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::prefs::Direction;

/// The CPM identities of a message or session (SD 5.2.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    /// `Conversation-ID`.
    pub conversation_id: Option<String>,
    /// `Contribution-ID`.
    pub contribution_id: Option<String>,
    /// `InReplyTo-Contribution-ID`.
    pub in_reply_to: Option<String>,
}

/// A standalone message to record.
#[derive(Debug, Clone)]
pub struct Standalone<'a> {
    /// The object's own RFC 5322 Message-ID (without `<>`).
    pub object_id: &'a str,
    /// SIP From (or CPIM From).
    pub from: &'a str,
    /// SIP To.
    pub to: &'a str,
    /// When the node saw it.
    pub date: SystemTime,
    /// CPM identities.
    pub ids: &'a Ids,
    /// The CPIM `imdn.Message-ID`.
    pub imdn_message_id: Option<&'a str>,
    /// From the recorded user's side.
    pub direction: Direction,
    /// The SIP Content-Type.
    pub content_type: &'a str,
    /// The body as received.
    pub body: &'a [u8],
}

/// One entry of a chat session's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the node relayed it.
    pub date: SystemTime,
    /// From the recorded user's side.
    pub direction: Direction,
    /// The CPIM `imdn.Message-ID`.
    pub imdn_message_id: Option<String>,
    /// The MSRP Content-Type (`message/cpim` in CPM).
    pub content_type: String,
    /// The whole (reassembled) MSRP body.
    pub body: Bytes,
}

/// A chat session's information (SD 5.2.1.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The object's own RFC 5322 Message-ID (without `<>`).
    pub object_id: String,
    /// Date and time of establishment.
    pub established: SystemTime,
    /// The inviting user.
    pub inviting: String,
    /// The invited users.
    pub invited: Vec<String>,
    /// CPM identities of the session.
    pub ids: Ids,
}

/// The IMAP folder of a conversation.
pub fn folder(conversation_id: Option<&str>) -> String {
    match conversation_id.filter(|c| !c.trim().is_empty()) {
        Some(c) => c
            .trim()
            .chars()
            .take(200)
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
                    ch
                } else {
                    '_'
                }
            })
            .collect(),
        None => "no-conversation".to_string(),
    }
}

/// A header value safe to write: no CR or LF.
fn clean(v: &str) -> String {
    v.trim().replace(['\r', '\n'], " ")
}

fn header(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        let _ = write!(out, "{name}: {}\r\n", clean(v));
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Outgoing => "sent",
        Direction::Incoming => "received",
    }
}

fn identities(out: &mut String, ids: &Ids) {
    header(out, "Conversation-ID", ids.conversation_id.as_deref());
    header(out, "Contribution-ID", ids.contribution_id.as_deref());
    header(out, "InReplyTo-Contribution-ID", ids.in_reply_to.as_deref());
}

/// Whether `body` can go in a MIME body as it is (8bit text with CRLF line ends).
fn is_plain_text(body: &[u8]) -> bool {
    if std::str::from_utf8(body).is_err() || body.contains(&0) {
        return false;
    }
    // Every CR is followed by LF and every LF preceded by CR (RFC 5322 §2.3).
    let mut prev = 0u8;
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && prev != b'\r' {
            return false;
        }
        if b == b'\r' && body.get(i + 1) != Some(&b'\n') {
            return false;
        }
        prev = b;
    }
    true
}

/// Append a body and, when needed, the `Content-Transfer-Encoding` that goes before it; the
/// header block is ended here.
fn body_part(out: &mut Vec<u8>, head: &str, body: &[u8]) {
    out.extend_from_slice(head.as_bytes());
    if is_plain_text(body) {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        base64_lines(out, body);
    }
}

/// RFC 2045 §6.8 base64, 76-character lines.
fn base64_lines(out: &mut Vec<u8>, data: &[u8]) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut col = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = |s: u32| A[((n >> s) & 63) as usize];
        out.push(idx(18));
        out.push(idx(12));
        out.push(if chunk.len() > 1 { idx(6) } else { b'=' });
        out.push(if chunk.len() > 2 { idx(0) } else { b'=' });
        col += 4;
        if col >= 76 {
            out.extend_from_slice(b"\r\n");
            col = 0;
        }
    }
    if col > 0 {
        out.extend_from_slice(b"\r\n");
    }
}

/// The RFC 5322 object of a standalone message.
pub fn standalone(m: &Standalone<'_>) -> Vec<u8> {
    let mut h = String::with_capacity(512);
    header(&mut h, "From", Some(m.from));
    header(&mut h, "To", Some(m.to));
    header(&mut h, "Date", Some(&rfc5322_date(m.date)));
    identities(&mut h, m.ids);
    header(&mut h, "IMDN-Message-ID", m.imdn_message_id);
    header(&mut h, "Message-ID", Some(&format!("<{}>", m.object_id)));
    header(
        &mut h,
        "Message-Direction",
        Some(direction_name(m.direction)),
    );
    h.push_str("MIME-Version: 1.0\r\n");
    header(&mut h, "Content-Type", Some(m.content_type));
    let mut out = Vec::with_capacity(h.len() + m.body.len() + 8);
    body_part(&mut out, &h, m.body);
    out
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\r' | '\n' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The session information part (`Application/X-CPM-Session`).
pub fn session_info_xml(info: &SessionInfo) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<session>\r\n");
    let _ = write!(
        x,
        "<session-type>1-1</session-type>\r\n<date>{}</date>\r\n<inviting>{}</inviting>\r\n<invited-participants>\r\n",
        rfc3339(info.established),
        xml_escape(&info.inviting)
    );
    for p in &info.invited {
        let _ = write!(x, "<participant>{}</participant>\r\n", xml_escape(p));
    }
    x.push_str("</invited-participants>\r\n</session>\r\n");
    x
}

/// The RFC 5322 object of a chat session's history: session information, then every entry
/// in order.
pub fn session_history(info: &SessionInfo, entries: &[Entry]) -> Vec<u8> {
    let mut boundary = format!(
        "=_cpm-iwf_{}",
        info.object_id.replace(['"', '\r', '\n'], "")
    );
    // RFC 2046 §5.1.1: the boundary must not occur in any part.
    while entries
        .iter()
        .any(|e| memchr::memmem::find(&e.body, boundary.as_bytes()).is_some())
    {
        boundary.push('_');
    }
    let mut h = String::with_capacity(1024);
    header(&mut h, "From", Some(&info.inviting));
    header(&mut h, "To", Some(&info.invited.join(", ")));
    header(&mut h, "Date", Some(&rfc5322_date(info.established)));
    identities(&mut h, &info.ids);
    header(&mut h, "Message-ID", Some(&format!("<{}>", info.object_id)));
    h.push_str("MIME-Version: 1.0\r\n");
    let _ = write!(
        h,
        "Content-Type: Multipart/Related; boundary=\"{boundary}\"; type=\"Application/X-CPM-Session\"\r\n\r\n"
    );
    let mut out = h.into_bytes();
    let _ = write!(
        Sink(&mut out),
        "--{boundary}\r\nContent-Type: Application/X-CPM-Session\r\n\r\n{}",
        session_info_xml(info)
    );
    for e in entries {
        let mut ph = format!("\r\n--{boundary}\r\n");
        header(&mut ph, "Content-Type", Some(&e.content_type));
        header(&mut ph, "Date", Some(&rfc5322_date(e.date)));
        header(&mut ph, "IMDN-Message-ID", e.imdn_message_id.as_deref());
        header(
            &mut ph,
            "Message-Direction",
            Some(direction_name(e.direction)),
        );
        body_part(&mut out, &ph, &e.body);
    }
    let _ = write!(Sink(&mut out), "\r\n--{boundary}--\r\n");
    out
}

struct Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
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

/// RFC 5322 §3.3 `date-time` in UTC: `Wed, 25 Nov 2026 10:00:00 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS.get((days % 7) as usize).copied().unwrap_or("Thu"),
        MONTHS
            .get(m.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("Jan"),
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// RFC 3339 UTC with seconds: `2026-11-25T10:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ids() -> Ids {
        Ids {
            conversation_id: Some("conv-1".into()),
            contribution_id: Some("contrib-1".into()),
            in_reply_to: None,
        }
    }

    #[test]
    fn dates_in_rfc5322_form() {
        assert_eq!(rfc5322_date(at(0)), "Thu, 01 Jan 1970 00:00:00 +0000");
        // 2026-11-25T10:00:00Z, a Wednesday.
        assert_eq!(
            rfc5322_date(at(1_795_600_800)),
            "Wed, 25 Nov 2026 10:00:00 +0000"
        );
        assert_eq!(rfc3339(at(1_795_600_800)), "2026-11-25T10:00:00Z");
    }

    #[test]
    fn folders_are_named_from_the_conversation() {
        assert_eq!(folder(Some("f81d4fae-7dec-11d0")), "f81d4fae-7dec-11d0");
        assert_eq!(folder(Some("a.b/c d")), "a_b_c_d");
        assert_eq!(folder(None), "no-conversation");
        assert_eq!(folder(Some("  ")), "no-conversation");
    }

    #[test]
    fn a_standalone_object_has_every_identity_and_the_body_as_received() {
        let body = b"From: <sip:a@x>\r\nTo: <sip:b@y>\r\n\r\nContent-Type: text/plain\r\n\r\nhi";
        let ids = Ids {
            in_reply_to: Some("contrib-0\r\nBcc: evil@x".into()),
            ..ids()
        };
        let o = standalone(&Standalone {
            object_id: "obj1@cpm-iwf",
            from: "<sip:alice@cpm.example.net>;tag=1",
            to: "<sip:bob@simple.example.net>",
            date: at(1_795_600_800),
            ids: &ids,
            imdn_message_id: Some("Msg-1"),
            direction: Direction::Outgoing,
            content_type: "message/cpim",
            body,
        });
        let text = String::from_utf8(o).expect("utf-8");
        let (head, rest) = text.split_once("\r\n\r\n").expect("header block");
        assert_eq!(
            head,
            "From: <sip:alice@cpm.example.net>;tag=1\r\nTo: <sip:bob@simple.example.net>\r\n\
Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nConversation-ID: conv-1\r\nContribution-ID: contrib-1\r\n\
InReplyTo-Contribution-ID: contrib-0  Bcc: evil@x\r\nIMDN-Message-ID: Msg-1\r\n\
Message-ID: <obj1@cpm-iwf>\r\nMessage-Direction: sent\r\nMIME-Version: 1.0\r\n\
Content-Type: message/cpim"
        );
        assert_eq!(rest.as_bytes(), body);
    }

    #[test]
    fn binary_bodies_go_base64() {
        let o = standalone(&Standalone {
            object_id: "o",
            from: "a",
            to: "b",
            date: at(0),
            ids: &Ids::default(),
            imdn_message_id: None,
            direction: Direction::Incoming,
            content_type: "image/png",
            body: &[0, 1, 2, 255],
        });
        let text = String::from_utf8(o).expect("ascii");
        assert!(
            text.ends_with("Content-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n"),
            "{text}"
        );
        let mut out = Vec::new();
        base64_lines(&mut out, b"Man");
        assert_eq!(out, b"TWFu\r\n");
        out.clear();
        base64_lines(&mut out, &[7u8; 60]);
        assert_eq!(
            out.iter().filter(|&&b| b == b'\n').count(),
            2,
            "76 per line"
        );
    }

    #[test]
    fn a_session_history_keeps_every_entry_in_order() {
        let info = SessionInfo {
            object_id: "s1@cpm-iwf".into(),
            established: at(1_795_600_800),
            inviting: "sip:alice@cpm.example.net".into(),
            invited: vec!["sip:bob@simple.example.net".into()],
            ids: ids(),
        };
        let entries: Vec<Entry> = (0..3)
            .map(|i| Entry {
                date: at(1_795_600_801 + i),
                direction: if i % 2 == 0 {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                },
                imdn_message_id: Some(format!("m{i}")),
                content_type: "message/cpim".into(),
                body: Bytes::from(format!(
                    "From: <sip:a@x>\r\n\r\nContent-Type: text/plain\r\n\r\nmessage {i}"
                )),
            })
            .collect();
        let text = String::from_utf8(session_history(&info, &entries)).expect("utf-8");
        assert!(text.contains(
            "Content-Type: Multipart/Related; boundary=\"=_cpm-iwf_s1@cpm-iwf\"; type=\"Application/X-CPM-Session\"\r\n"
        ));
        assert!(text.contains("<inviting>sip:alice@cpm.example.net</inviting>"));
        assert!(text.contains("<participant>sip:bob@simple.example.net</participant>"));
        assert!(text.contains("<date>2026-11-25T10:00:00Z</date>"));
        let positions: Vec<usize> = (0..3)
            .map(|i| text.find(&format!("message {i}")).expect("entry"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(text.matches("--=_cpm-iwf_s1@cpm-iwf\r\n").count(), 4);
        assert!(text.ends_with("\r\n--=_cpm-iwf_s1@cpm-iwf--\r\n"));
        assert!(text.contains("IMDN-Message-ID: m1\r\nMessage-Direction: received\r\n\r\nFrom"));
    }

    #[test]
    fn a_boundary_inside_a_body_is_avoided() {
        let info = SessionInfo {
            object_id: "x".into(),
            established: at(0),
            inviting: "a".into(),
            invited: vec![],
            ids: Ids::default(),
        };
        let e = Entry {
            date: at(0),
            direction: Direction::Outgoing,
            imdn_message_id: None,
            content_type: "text/plain".into(),
            body: Bytes::from_static(b"--=_cpm-iwf_x"),
        };
        let text = String::from_utf8(session_history(&info, &[e])).expect("utf-8");
        assert!(text.contains("boundary=\"=_cpm-iwf_x_\""));
    }
}
