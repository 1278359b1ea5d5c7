//! A final or provisional response from the far side, turned into the answer to the request
//! the gateway received (the back-to-back user agent answers its own server transaction,
//! RFC 3261 §8.2.6, with the status the far end gave).

use super::addr::with_tag;
use super::{Env, TranslateError};
use crate::wire::sip::SipMessage;

/// Header fields of a response that explain it and mean the same on the other side: what to
/// send instead (415: Accept, Accept-Encoding, Accept-Language, RFC 3261 §21.4.13), when to
/// retry (Retry-After, §20.33), what is not supported (Unsupported, §20.40; Require),
/// Min-Expires (§20.23), Warning (§20.43), Error-Info (§20.18), and Reason (RFC 3326).
const EXPLAINING_HEADERS: [&str; 10] = [
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Retry-After",
    "Unsupported",
    "Require",
    "Min-Expires",
    "Warning",
    "Error-Info",
    "Reason",
];

/// The answer to `request` (received by the gateway) for `far_response` (the far side's answer
/// to the request the gateway sent on). `to_tag` is the gateway's tag on the received leg:
/// fixed per dialog, so the caller passes it (RFC 3261 §8.2.6.2); `None` draws a fresh one.
pub fn answer_with(
    request: &SipMessage,
    far_response: &SipMessage,
    to_tag: Option<&str>,
    env: &mut Env<'_>,
) -> Result<SipMessage, TranslateError> {
    let code = far_response
        .status_code()
        .ok_or(TranslateError::Missing("status code"))?;
    let reason = far_response
        .reason()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .unwrap_or_default();
    let mut out = request.response_to(code, &reason);
    // 100 Trying carries no tag (RFC 3261 §8.2.6.1); every other response does, and a
    // request inside a dialog already names it (§8.2.6.2: the To of the request is kept).
    if code > 100 && request.to_tag().is_none() {
        let fresh;
        let tag = match to_tag {
            Some(t) => t,
            None => {
                fresh = String::from_utf8_lossy(&env.ids.fresh_id()).into_owned();
                &fresh
            }
        };
        let to = request.header("To").ok_or(TranslateError::Missing("To"))?;
        let tagged = with_tag(to, Some(tag)).map_err(|e| TranslateError::header("To", e))?;
        out.set_header("To", &tagged)?;
    }
    for (name, value) in far_response.headers() {
        if EXPLAINING_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            out.push_header(name, value)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::time::Millis;
    use crate::translate::conversation::IdSource;
    use crate::wire::sip::{Limits, parse_datagram};

    struct One;
    impl IdSource for One {
        fn fresh_id(&mut self) -> Bytes {
            Bytes::from_static(b"t1")
        }
    }

    fn msg(text: &str) -> SipMessage {
        parse_datagram(Bytes::from(text.replace('\n', "\r\n")), &Limits::default()).expect("valid")
    }

    #[test]
    fn a_415_keeps_its_accept_and_gets_our_tag() {
        let request = msg("MESSAGE sip:bob@simple.example SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1
Max-Forwards: 70
From: <sip:alice@cpm.example>;tag=a
To: <sip:bob@simple.example>
Call-ID: c1
CSeq: 4 MESSAGE
Content-Length: 0

");
        let far = msg("SIP/2.0 415 Unsupported Media Type
Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKgw
From: <sip:alice@cpm.example>;tag=gen
To: <sip:bob@simple.example>;tag=far
Call-ID: gen-call
CSeq: 1 MESSAGE
Accept: text/plain
Server: baresip
Content-Length: 0

");
        let mut ids = One;
        let mut env = Env {
            now: Millis(0),
            ids: &mut ids,
            datetime: "",
        };
        let out = answer_with(&request, &far, None, &mut env).expect("answer");
        assert_eq!(out.status_code(), Some(415));
        assert_eq!(out.header("Call-ID"), Some("c1"));
        assert_eq!(out.header("CSeq"), Some("4 MESSAGE"));
        assert_eq!(
            out.header("Via"),
            Some("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1")
        );
        assert_eq!(out.header("To"), Some("<sip:bob@simple.example>;tag=t1"));
        assert_eq!(out.header("Accept"), Some("text/plain"));
        assert_eq!(
            out.header("Server"),
            None,
            "the far side's software is its own"
        );
    }
}
