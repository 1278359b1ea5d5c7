//! Service identification in `Contact` and `Accept-Contact` header values.
//!
//! The CPM side names a service by its ICSI in the `+g.3gpp.icsi-ref` feature tag (3GPP TS 24.229
//! §7.2A.8: a quoted, comma-separated list of percent-escaped URNs); the SIMPLE IM side by boolean
//! feature tags (RFC 3840 §9), `+g.oma.sip-im` and friends. Both are feature parameters of a
//! `contact-param` (RFC 3261 §25.1) or an `ac-value` (RFC 3841 §10: `"*" *(SEMI ac-params)`).
//!
//! These functions rewrite one header value (which may list several contacts, separated by
//! commas) and leave every parameter they do not own exactly as it came (`+sip.instance`,
//! `expires`, `q`, `require`, `explicit`, RCS IARIs, ...). Which tags to write is data
//! ([`Mappings`]); only the mechanism is here.

use super::params::{ContactParams, ParamError, param_name, param_value, split_top};
use crate::mapping::{Mappings, Service};

/// The CPM feature tag that carries ICSIs (3GPP TS 24.229 §7.2A.8).
pub const ICSI_REF: &str = "+g.3gpp.icsi-ref";

/// The services named by a `+g.3gpp.icsi-ref` value: a comma-separated list of ICSIs, escaped
/// or not (PROTOCOL-NOTES.md: some clients write the raw URN). Unknown ICSIs are skipped.
fn services_in_icsi_ref(value: &str, mappings: &Mappings, found: &mut Vec<Service>) {
    for icsi in value.split(',').map(str::trim) {
        if let Some(s) = mappings.service_by_icsi(icsi)
            && !found.contains(&s)
        {
            found.push(s);
        }
    }
}

/// The CPM services a header value names through `+g.3gpp.icsi-ref`, in order of appearance.
pub fn cpm_services(value: &str, mappings: &Mappings) -> Result<Vec<Service>, ParamError> {
    let mut found = Vec::new();
    for contact in split_top(value, b',')? {
        for p in ContactParams::parse(contact)?.params {
            if param_name(p).eq_ignore_ascii_case(ICSI_REF)
                && let Some(v) = param_value(p)
            {
                services_in_icsi_ref(v, mappings, &mut found);
            }
        }
    }
    Ok(found)
}

/// Whether a header value carries the SIMPLE IM feature tag `tag` (RFC 3840: boolean tags are
/// present or absent; names compare case-insensitively, RFC 3261 §7.3.1).
pub fn has_simple_tag(value: &str, tag: &str) -> Result<bool, ParamError> {
    for contact in split_top(value, b',')? {
        if ContactParams::parse(contact)?
            .params
            .iter()
            .any(|p| param_name(p).eq_ignore_ascii_case(tag))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Is `name` one of the SIMPLE IM feature tags of the mappings?
fn is_simple_tag(name: &str, mappings: &Mappings) -> bool {
    Service::ALL.iter().any(|s| {
        mappings
            .service(*s)
            .simple_feature_tag
            .eq_ignore_ascii_case(name)
    })
}

/// Rewrite a CPM `Contact` / `Accept-Contact` value for the SIMPLE side: every
/// `+g.3gpp.icsi-ref` is replaced by the SIMPLE IM tags of the services it names (IR.90 §4.3.3,
/// docs/interworking-notes.md §1.3). Returns the new value and the services found; an empty list
/// means the value named no CPM service the gateway maps, and the caller decides what that
/// deserves.
pub fn to_simple(value: &str, mappings: &Mappings) -> Result<(String, Vec<Service>), ParamError> {
    let mut out = String::with_capacity(value.len());
    let mut all = Vec::new();
    for (i, part) in split_top(value, b',')?.into_iter().enumerate() {
        let mut contact = ContactParams::parse(part)?;
        let mut services = Vec::new();
        contact.params.retain(|p| {
            let icsi = param_name(p).eq_ignore_ascii_case(ICSI_REF);
            if icsi && let Some(v) = param_value(p) {
                services_in_icsi_ref(v, mappings, &mut services);
            }
            !icsi
        });
        let mut extra: Vec<String> = Vec::new();
        for s in &services {
            let tag = &mappings.service(*s).simple_feature_tag;
            let present = contact
                .params
                .iter()
                .any(|p| param_name(p).eq_ignore_ascii_case(tag))
                || extra.iter().any(|e| e.eq_ignore_ascii_case(tag));
            if !present {
                extra.push(tag.clone());
            }
            if !all.contains(s) {
                all.push(*s);
            }
        }
        if i > 0 {
            out.push(',');
        }
        contact.write(&extra, &mut out);
    }
    Ok((out, all))
}

/// Rewrite a SIMPLE `Contact` / `Accept-Contact` value for the CPM side: the SIMPLE IM feature
/// tags are removed and `+g.3gpp.icsi-ref` naming `service` (escaped form, TS 24.229 §7.2A.8)
/// is written instead. `service` comes from the request's classification
/// (docs/interworking-notes.md §1.4), since `+g.oma.sip-im` alone names several services.
pub fn to_cpm(value: &str, service: Service, mappings: &Mappings) -> Result<String, ParamError> {
    let icsi_ref = format!(
        "{ICSI_REF}=\"{}\"",
        mappings.service(service).cpm_icsi_escaped
    );
    let mut out = String::with_capacity(value.len() + icsi_ref.len());
    for (i, part) in split_top(value, b',')?.into_iter().enumerate() {
        let mut contact = ContactParams::parse(part)?;
        // An icsi-ref already there (an RCS-lineage SIMPLE client) is replaced, not doubled.
        contact.params.retain(|p| {
            let name = param_name(p);
            !is_simple_tag(name, mappings) && !name.eq_ignore_ascii_case(ICSI_REF)
        });
        if i > 0 {
            out.push(',');
        }
        contact.write(std::slice::from_ref(&icsi_ref), &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::params::MAX_PARAMS;

    fn m() -> Mappings {
        Mappings::embedded().expect("embedded mappings")
    }

    const CHAT: &str = "urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session";

    #[test]
    fn cpm_contact_becomes_simple_and_keeps_other_params() {
        let v = format!(
            "<sip:alice@198.51.100.7:5060;transport=tcp;ob>;+sip.instance=\"<urn:gsma:imei:35-1;x>\";+g.3gpp.icsi-ref=\"{CHAT}\";expires=600"
        );
        let (out, services) = to_simple(&v, &m()).unwrap();
        assert_eq!(services, vec![Service::Chat]);
        assert_eq!(
            out,
            "<sip:alice@198.51.100.7:5060;transport=tcp;ob>;+sip.instance=\"<urn:gsma:imei:35-1;x>\";expires=600;+g.oma.sip-im"
        );
    }

    #[test]
    fn accept_contact_with_require_explicit_and_raw_urn() {
        let v = "*;+g.3gpp.icsi-ref=\"urn:urn-7:3gpp-service.ims.icsi.oma.cpm.largemsg\";require;explicit";
        let (out, services) = to_simple(v, &m()).unwrap();
        assert_eq!(services, vec![Service::LargeMessage]);
        assert_eq!(out, "*;require;explicit;+g.oma.sip-im.large-message");
    }

    #[test]
    fn several_icsis_and_several_contacts() {
        let v = format!(
            "<sip:a@x>;+g.3gpp.icsi-ref=\"{CHAT},urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\", <sip:b@y>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.largemsg\""
        );
        let (out, services) = to_simple(&v, &m()).unwrap();
        assert_eq!(
            services,
            vec![Service::Chat, Service::Pager, Service::LargeMessage]
        );
        // chat and pager share +g.oma.sip-im: written once.
        assert_eq!(
            out,
            "<sip:a@x>;+g.oma.sip-im, <sip:b@y>;+g.oma.sip-im.large-message"
        );
        assert_eq!(cpm_services(&v, &m()).unwrap(), services);
    }

    #[test]
    fn unknown_icsi_is_reported_as_no_service() {
        let v = "<sip:a@x>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"";
        let (out, services) = to_simple(v, &m()).unwrap();
        assert!(services.is_empty());
        assert_eq!(out, "<sip:a@x>");
    }

    #[test]
    fn simple_contact_becomes_cpm() {
        let v = "<sip:bob@192.0.2.4>;+g.oma.sip-im;+G.OMA.SIP-IM.large-message;q=0.5";
        let out = to_cpm(v, Service::Chat, &m()).unwrap();
        assert_eq!(
            out,
            format!("<sip:bob@192.0.2.4>;q=0.5;+g.3gpp.icsi-ref=\"{CHAT}\"")
        );
        assert!(has_simple_tag(v, "+g.oma.sip-im").unwrap());
        assert!(!has_simple_tag(&out, "+g.oma.sip-im").unwrap());
    }

    #[test]
    fn round_trip_keeps_the_service() {
        let mappings = m();
        for s in [Service::Chat, Service::Pager, Service::LargeMessage] {
            let cpm = to_cpm("*;+g.oma.sip-im;require;explicit", s, &mappings).unwrap();
            let (simple, services) = to_simple(&cpm, &mappings).unwrap();
            assert_eq!(services, vec![s]);
            assert!(has_simple_tag(&simple, &mappings.service(s).simple_feature_tag).unwrap());
            assert_eq!(cpm_services(&cpm, &mappings).unwrap(), vec![s]);
        }
    }

    #[test]
    fn separators_inside_quotes_and_angles_do_not_split() {
        let v = "<sip:a@x;lr,b>;+sip.instance=\"<urn:uuid:1;2,3>\";x=\"a\\\"b;c\"";
        let (out, _) = to_simple(v, &m()).unwrap();
        assert_eq!(out, v);
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        assert_eq!(
            to_simple("<sip:a@x;lr", &m()),
            Err(ParamError::Unterminated)
        );
        assert_eq!(to_simple("*;x=\"open", &m()), Err(ParamError::Unterminated));
        let many = format!("*{}", ";p".repeat(MAX_PARAMS + 1));
        assert_eq!(to_simple(&many, &m()), Err(ParamError::TooManyParams));
        for v in ["", ";", ",,", "*;=", "\u{e9};\u{e9}=\"\u{e9}\""] {
            let _ = to_simple(v, &m());
            let _ = to_cpm(v, Service::Pager, &m());
        }
    }

    proptest::proptest! {
        // Any header value: an answer or a typed error, never a panic; and a value the CPM
        // rewrite accepted is accepted again by the SIMPLE rewrite with the service kept.
        #[test]
        fn any_value_is_handled(v in "[<>\"\\;,=*+a-z .:%-]{0,80}") {
            let mappings = m();
            let _ = to_simple(&v, &mappings);
            if let Ok(cpm) = to_cpm(&v, Service::Pager, &mappings) {
                let (_, services) = to_simple(&cpm, &mappings).unwrap();
                proptest::prop_assert!(services.contains(&Service::Pager));
            }
        }
    }
}
