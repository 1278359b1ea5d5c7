//! Multi-device routing (CPM 2.0 §4.2): a notification goes back to the device that sent the
//! message, not to every device of the user.
//!
//! What identifies the device is read from the request's `Contact`: a GRUU (RFC 5627 §3: a URI
//! with the `gr` parameter, which routes to one instance) or the instance id
//! (`+sip.instance`, RFC 5626 §4.1). A notification is then sent to the GRUU, or to the user's
//! address with `Accept-Contact: *;+sip.instance="<...>";require;explicit` (RFC 3841 §9, §10),
//! which a proxy honours by forking to that instance only.

use std::ops::Range;

use bytes::Bytes;

use super::params::{
    MAX_PARAMS, ParamError, check_split, param_name, param_value, split_ascii, split_top_either,
    trim,
};
use super::state::Device;
use crate::wire::text;

/// The instance-id feature tag (RFC 5626 §4.1).
pub(crate) const SIP_INSTANCE: &str = "+sip.instance";

/// Where the parts of a `Contact` value that name the sending device lie in it (byte ranges):
/// the first contact's head (`name-addr` or `addr-spec`, as split), and its first
/// `+sip.instance` parameter (trimmed), when it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceParts {
    /// The first contact's head.
    pub head: Range<usize>,
    /// The URI inside the head's `<...>` (the first one outside quotes), when it has one: the
    /// split found it on its way (not searched for again).
    pub uri: Option<Range<usize>>,
    /// Its first `+sip.instance` parameter, `name=value` as written.
    pub instance: Option<Range<usize>>,
}

/// The device that sent a request: `aor` is its From address of record, `contact` the value of
/// its `Contact` header (the first contact is the sender's, RFC 3261 §8.1.1.8). Values are
/// slices of `contact`, not copies.
pub fn device_of(aor: Bytes, contact: Option<&Bytes>) -> Result<Device, ParamError> {
    let Some(contact) = contact else {
        return Ok(Device {
            aor,
            gruu: None,
            instance: None,
        });
    };
    let Ok(text) = std::str::from_utf8(contact) else {
        // A Contact that is not UTF-8 names no device we could address: the AOR it is.
        return Ok(Device {
            aor,
            gruu: None,
            instance: None,
        });
    };
    let parts = device_parts(text)?;
    Ok(device_at(aor, contact, text, &parts))
}

/// The [`DeviceParts`] of a `Contact` value, with the errors [`device_of`] gives: the first
/// contact's head and parameters in one pass; the other contacts read for their separators
/// only (an unterminated one is an error as anywhere).
pub fn device_parts(text: &str) -> Result<DeviceParts, ParamError> {
    let base = text.as_ptr() as usize;
    // Parts are slices of `text`.
    let range = |s: &str| {
        let at = (s.as_ptr() as usize).wrapping_sub(base);
        at..at.wrapping_add(s.len())
    };
    let mut parts = split_top_either(text, b';', b',');
    let (head, mut sep) = parts.next().unwrap_or(Ok(("", None)))?;
    let uri = parts.angle();
    let mut count = 0usize;
    let mut instance = None;
    while sep == Some(b';') {
        let (p, next) = parts.next().unwrap_or(Ok(("", None)))?;
        sep = next;
        let p = trim(p);
        if p.is_empty() {
            continue;
        }
        count += 1;
        if instance.is_none() && param_name(p).eq_ignore_ascii_case(SIP_INSTANCE) {
            instance = Some(range(p));
        }
    }
    if sep.is_some() {
        check_split(parts.rest(), b',')?;
    }
    if count > MAX_PARAMS {
        return Err(ParamError::TooManyParams);
    }
    Ok(DeviceParts {
        head: range(head),
        uri,
        instance,
    })
}

/// [`device_of`] of a `Contact` value whose [`DeviceParts`] are known (found by the pass that
/// rewrote it, [`super::feature_tags::to_simple_device_into`]). `text` is `contact` as text
/// (the same bytes, read without checking them again); the values are slices of `contact`.
pub fn device_at(aor: Bytes, contact: &Bytes, text: &str, parts: &DeviceParts) -> Device {
    debug_assert_eq!(contact.as_ref(), text.as_bytes());
    let base = text.as_ptr() as usize;
    // A part of `text` as the same bytes of `contact`.
    let share = |s: &str| {
        let at = (s.as_ptr() as usize).wrapping_sub(base);
        let r = at..at.wrapping_add(s.len());
        contact.get(r.clone()).map_or_else(
            || Bytes::copy_from_slice(s.as_bytes()),
            |_| contact.slice(r),
        )
    };
    let (gruu, instance) = device_texts(text, parts);
    Device {
        aor,
        gruu: gruu.map(share),
        instance: instance.map(share),
    }
}

/// What [`device_at`] keeps of a `Contact` value `text` with these [`DeviceParts`]: the GRUU
/// and the instance id, as slices of `text` (nothing else of the Contact is kept).
pub(crate) fn device_texts<'t>(
    text: &'t str,
    parts: &DeviceParts,
) -> (Option<&'t str>, Option<&'t str>) {
    // The URI of `<URI>` (a `<` inside a quoted display name is not its start), else the
    // head is an `addr-spec`.
    let uri = match &parts.uri {
        Some(r) => text.get(r.clone()).unwrap_or_default(),
        None => text.get(parts.head.clone()).unwrap_or_default().trim(),
    };
    // RFC 5627 §3.1: a GRUU carries the `gr` URI parameter (a URI with no `g` has none).
    let is_gruu = text::find_byte2(b'g', b'G', uri.as_bytes()).is_some()
        && split_ascii(uri, b';')
            .skip(1)
            .any(|p| param_name(p).eq_ignore_ascii_case("gr"));
    let instance = parts
        .instance
        .as_ref()
        .and_then(|r| text.get(r.clone()))
        .and_then(param_value)
        .map(|v| v.trim_start_matches('<').trim_end_matches('>'))
        .filter(|v| !v.is_empty());
    (is_gruu.then_some(uri), instance)
}

/// How to address a request to exactly one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRoute {
    /// The Request-URI: the GRUU, or the user's address of record.
    pub request_uri: Bytes,
    /// An `Accept-Contact` value that restricts forking to the device, when the Request-URI
    /// alone does not.
    pub accept_contact: Option<String>,
}

/// The route to `device`: its GRUU when it has one, else its AOR restricted to its instance,
/// else its AOR (no way to single the device out: every device of the user gets it).
pub fn route_to(device: &Device) -> DeviceRoute {
    if let Some(gruu) = &device.gruu {
        return DeviceRoute {
            request_uri: gruu.clone(),
            accept_contact: None,
        };
    }
    DeviceRoute {
        request_uri: device.aor.clone(),
        accept_contact: device.instance.as_ref().map(|i| {
            format!(
                "*;{SIP_INSTANCE}=\"<{}>\";require;explicit",
                String::from_utf8_lossy(i)
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AOR: &str = "sip:alice@cpm.example.net";

    fn device(contact: &'static str) -> Device {
        device_of(
            Bytes::from_static(AOR.as_bytes()),
            Some(&Bytes::from_static(contact.as_bytes())),
        )
        .unwrap()
    }

    #[test]
    fn a_gruu_contact_is_routed_by_request_uri() {
        let d = device(
            "<sip:alice@cpm.example.net;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"",
        );
        assert_eq!(
            d.gruu.as_deref(),
            Some(
                &b"sip:alice@cpm.example.net;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"[..]
            )
        );
        let r = route_to(&d);
        assert_eq!(r.request_uri, d.gruu.unwrap());
        assert_eq!(r.accept_contact, None);
    }

    #[test]
    fn an_instance_is_routed_by_accept_contact_require_explicit() {
        let d = device(
            "\"Alice's phone\" <sip:alice@198.51.100.7:5060;transport=tcp>;expires=600;+sip.instance=\"<urn:gsma:imei:35-209900-176148-1>\";+g.oma.sip-im",
        );
        assert_eq!(d.gruu, None);
        assert_eq!(
            d.instance.as_deref(),
            Some(&b"urn:gsma:imei:35-209900-176148-1"[..])
        );
        let r = route_to(&d);
        assert_eq!(r.request_uri, AOR.as_bytes());
        assert_eq!(
            r.accept_contact.as_deref(),
            Some("*;+sip.instance=\"<urn:gsma:imei:35-209900-176148-1>\";require;explicit")
        );
    }

    #[test]
    fn nothing_known_means_the_aor() {
        let d = device_of(Bytes::from_static(AOR.as_bytes()), None).unwrap();
        assert_eq!(route_to(&d).request_uri, AOR.as_bytes());
        let d = device("<sip:alice@198.51.100.7>");
        assert_eq!((d.gruu.clone(), d.instance.clone()), (None, None));
        assert_eq!(route_to(&d).accept_contact, None);
        // Only the first contact is the sender's.
        let d = device("<sip:a@x>, <sip:a@y;gr>;+sip.instance=\"<urn:uuid:2>\"");
        assert_eq!((d.gruu, d.instance), (None, None));
    }

    #[test]
    fn unterminated_anywhere_wins_over_too_many_params() {
        let many = (0..MAX_PARAMS + 1)
            .map(|i| format!(";p{i}"))
            .collect::<String>();
        let aor = || Bytes::from_static(AOR.as_bytes());
        let c = |s: String| device_of(aor(), Some(&Bytes::from(s)));
        assert_eq!(
            c(format!("<sip:a@x>{many}")),
            Err(ParamError::TooManyParams)
        );
        assert_eq!(
            c(format!("<sip:a@x>{many}, <sip:b@y")),
            Err(ParamError::Unterminated)
        );
        assert_eq!(
            c("<sip:a@x>;+sip.instance=\"<urn:uuid:1>\", \"x".into()),
            Err(ParamError::Unterminated)
        );
        let d = c("<sip:a@x>;+sip.instance=\"<urn:uuid:1>\";q=1, <sip:a@y;gr>".into()).unwrap();
        assert_eq!(d.instance.as_deref(), Some(&b"urn:uuid:1"[..]));
        assert_eq!(d.gruu, None);
    }

    proptest::proptest! {
        // The parts the Contact rewrite finds on its way are those `device_of` reads, whenever
        // the rewrite takes the value.
        #[test]
        fn rewrite_finds_the_device_parts(
            v in "(<sip:a@x;gr>|<sip:a@x;lr>|sip:b@y|\\*|\"q;,\"|;|,| |\\+sip\\.instance=\"<urn:uuid:(1|2)>\"|\\+SIP\\.INSTANCE=x|\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.msg\"|\\+g\\.oma\\.sip-im|gr|x=1|<|\u{e9}){0,12}"
        ) {
            let mappings = crate::mapping::Mappings::embedded().unwrap();
            let mut out = String::new();
            let mut parts = DeviceParts::default();
            let rewritten = crate::translate::feature_tags::to_simple_device_into(
                &v,
                &mappings,
                &mut out,
                &mut parts,
            );
            if rewritten.is_ok() {
                proptest::prop_assert_eq!(device_parts(&v), Ok(parts.clone()));
                let aor = Bytes::from_static(AOR.as_bytes());
                let contact = Bytes::from(v.clone());
                proptest::prop_assert_eq!(
                    device_of(aor.clone(), Some(&contact)),
                    Ok(device_at(aor, &contact, &v, &parts))
                );
            }
        }
    }

    /// The URI is the one in the `<...>` the split found: a `<` inside the quoted display name
    /// does not start it.
    #[test]
    fn a_quoted_angle_is_not_the_uri() {
        let d = device("\"a<b\" <sip:alice@x;gr>;+g.oma.sip-im");
        assert_eq!(d.gruu.as_deref(), Some(&b"sip:alice@x;gr"[..]));
        // An addr-spec's parameters are the contact's (RFC 3261 §20.10): no GRUU.
        assert_eq!(device("sip:alice@x;gr").gruu, None);
    }

    #[test]
    fn malformed_contacts_are_errors() {
        let bad = Bytes::from_static(b"<sip:alice@x;gr");
        assert_eq!(
            device_of(Bytes::from_static(AOR.as_bytes()), Some(&bad)),
            Err(ParamError::Unterminated)
        );
    }
}
