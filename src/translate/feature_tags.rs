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

use super::device::{DeviceParts, SIP_INSTANCE};
use super::params::{
    Contact, MAX_PARAMS, ParamError, check_split, is_named, param_name, param_value, split_ascii,
    split_top_either, split_top_iter, trim,
};
use crate::mapping::{Mappings, Service};
use crate::wire::sip::Text;
use crate::wire::text;

/// The CPM feature tag that carries ICSIs (3GPP TS 24.229 §7.2A.8).
pub const ICSI_REF: &str = "+g.3gpp.icsi-ref";

/// Services in order of first appearance, without repeats (no allocation: there are
/// [`Service::ALL`] of them).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceList {
    list: [Option<Service>; Service::ALL.len()],
}

impl ServiceList {
    /// Add `s` unless it is there.
    pub fn push(&mut self, s: Service) {
        if self.contains(s) {
            return;
        }
        if let Some(slot) = self.list.iter_mut().find(|x| x.is_none()) {
            *slot = Some(s);
        }
    }

    /// Whether `s` is in the list.
    pub fn contains(&self, s: Service) -> bool {
        self.list.contains(&Some(s))
    }

    /// The services, in order.
    pub fn iter(&self) -> impl Iterator<Item = Service> + '_ {
        self.list.iter().map_while(|s| *s)
    }

    /// The first service.
    pub fn first(&self) -> Option<Service> {
        self.list.first().copied().flatten()
    }
}

/// The services named by a `+g.3gpp.icsi-ref` value: a comma-separated list of ICSIs, escaped
/// or not (PROTOCOL-NOTES.md: some clients write the raw URN). Unknown ICSIs are skipped.
fn services_in_icsi_ref(value: &str, mappings: &Mappings, found: &mut ServiceList) {
    for icsi in split_ascii(value, b',').map(trim) {
        if let Some(s) = mappings.service_by_icsi(icsi) {
            found.push(s);
        }
    }
}

/// [`services_in_icsi_ref`] of `value` (a fresh list), looked up first in the thread's
/// [`LastIcsi`]: the list is a function of the value and the mappings' services alone, and
/// every CPM request of a service carries the same one (its ICSI, TS 24.229 §7.2A.8), whoever
/// sends it.
fn icsi_services(value: &str, mappings: &Mappings) -> ServiceList {
    let fresh = || {
        let mut found = ServiceList::default();
        services_in_icsi_ref(value, mappings, &mut found);
        found
    };
    if value.len() > LastToSimple::MAX_VALUE {
        return fresh();
    }
    LAST_ICSI.with_borrow_mut(|last| {
        let id = mappings.services_id();
        if last.services_id == id && last.value == value {
            return last.services;
        }
        let found = fresh();
        last.services_id = id;
        last.value.clear();
        last.value.push_str(value);
        last.services = found;
        found
    })
}

/// The last `+g.3gpp.icsi-ref` value a thread read and the services it names; `services_id`
/// 0 (no mappings has it): nothing remembered yet.
struct LastIcsi {
    services_id: u64,
    value: String,
    services: ServiceList,
}

thread_local! {
    static LAST_ICSI: std::cell::RefCell<LastIcsi> = const {
        std::cell::RefCell::new(LastIcsi {
            services_id: 0,
            value: String::new(),
            services: ServiceList {
                list: [None; Service::ALL.len()],
            },
        })
    };
}

/// The CPM services a header value names through `+g.3gpp.icsi-ref`, in order of appearance.
pub fn cpm_services(value: &str, mappings: &Mappings) -> Result<Vec<Service>, ParamError> {
    Ok(cpm_service_list(value, mappings)?.iter().collect())
}

/// [`cpm_services`] without allocating.
pub fn cpm_service_list(value: &str, mappings: &Mappings) -> Result<ServiceList, ParamError> {
    let mut found = ServiceList::default();
    check_split(value, b',')?;
    for contact in split_top_iter(value, b',') {
        for p in Contact::parse(contact?)?.params() {
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
    check_split(value, b',')?;
    for contact in split_top_iter(value, b',') {
        if Contact::parse(contact?)?
            .params()
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

/// Whether `value` holds `+g.3gpp.icsi-ref` anywhere (ASCII case ignored).
pub fn mentions_icsi_ref(value: &str) -> bool {
    let b = value.as_bytes();
    let mut from = 0usize;
    while let Some(i) = b.get(from..).and_then(|r| text::find_byte(b'+', r)) {
        let at = from + i;
        // The byte after the `+` first: a `+` elsewhere (a telephone number) is rarely
        // followed by `g`.
        if b.get(at + 1).is_some_and(|g| g.eq_ignore_ascii_case(&b'g'))
            && b.get(at..at + ICSI_REF.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(ICSI_REF.as_bytes()))
        {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Rewrite a CPM `Contact` / `Accept-Contact` value for the SIMPLE side: every
/// `+g.3gpp.icsi-ref` is replaced by the SIMPLE IM tags of the services it names (IR.90 §4.3.3,
/// docs/interworking-notes.md §1.3). Returns the new value and the services found; an empty list
/// means the value named no CPM service the gateway maps, and the caller decides what that
/// deserves.
pub fn to_simple(value: &str, mappings: &Mappings) -> Result<(String, Vec<Service>), ParamError> {
    let mut out = String::with_capacity(value.len());
    let all = to_simple_into(value, mappings, &mut out)?;
    Ok((out, all.iter().collect()))
}

/// [`to_simple`] of a shared value: the value itself (no copy) when there is nothing to
/// rewrite (no `+g.3gpp.icsi-ref`, written as the rewrite would write it), else one new
/// string.
pub fn to_simple_text(value: &Text, mappings: &Mappings) -> Result<Text, ParamError> {
    if to_simple_keeps(value)? {
        return Ok(value.clone());
    }
    let mut out = String::with_capacity(value.len() + 16);
    to_simple_into(value, mappings, &mut out)?;
    Ok(Text::from(out))
}

/// Whether [`to_simple`] gives `value` back unchanged: no `+g.3gpp.icsi-ref`, and written as
/// the rewrite writes (the errors of [`to_simple`] when it has some).
pub fn to_simple_keeps(value: &str) -> Result<bool, ParamError> {
    if mentions_icsi_ref(value) {
        return Ok(false);
    }
    check_split(value, b',')?;
    let mut canonical = true;
    for part in split_top_iter(value, b',') {
        canonical &= Contact::parse(part?)?.is_canonical();
    }
    Ok(canonical)
}

/// [`to_simple`] appending to `out`, returning the services found. One pass over the value
/// ([`split_top_either`]: each contact's head and parameters as they come): the parameters are
/// written as they are read, the tags to add follow each contact.
pub fn to_simple_into(
    value: &str,
    mappings: &Mappings,
    out: &mut String,
) -> Result<ServiceList, ParamError> {
    rewrite_to_simple(value, mappings, out, None, &mut IcsiMemo::default())
}

/// [`to_simple_into`] of a `Contact` value that also finds, in the same pass, what names the
/// sending device ([`DeviceParts`], as [`super::device::device_parts`] finds them: the value
/// rewritten without an error has them).
pub fn to_simple_device_into(
    value: &str,
    mappings: &Mappings,
    out: &mut String,
    device: &mut DeviceParts,
) -> Result<ServiceList, ParamError> {
    rewrite_to_simple(value, mappings, out, Some(device), &mut IcsiMemo::default())
}

/// The services of the last `+g.3gpp.icsi-ref` value read, kept across the values of one
/// request: its Contact and Accept-Contact usually carry the same ICSI list, which is then
/// looked up once (~250 instructions a lookup: the list split, the mappings compared).
#[derive(Debug, Default)]
pub struct IcsiMemo<'v>(Option<(&'v str, ServiceList)>);

/// [`to_simple_into`], or [`to_simple_device_into`] with `device`, for the values of one
/// request: `memo` is shared between them.
///
/// A value read without `device` (an `Accept-Contact`, a Contact after the first) is looked
/// up first in the thread's [`LastToSimple`]: the rewrite is a function of the value and the
/// mappings' services alone, and a CPM client sends the same `Accept-Contact` with every
/// request (its service's `+g.3gpp.icsi-ref` and `require;explicit`, RFC 3841 §10).
pub fn to_simple_into_with<'v>(
    value: &'v str,
    mappings: &Mappings,
    out: &mut String,
    device: Option<&mut DeviceParts>,
    memo: &mut IcsiMemo<'v>,
) -> Result<ServiceList, ParamError> {
    if device.is_some() || value.len() > LastToSimple::MAX_VALUE {
        return rewrite_to_simple(value, mappings, out, device, memo);
    }
    LAST_TO_SIMPLE.with_borrow_mut(|last| {
        let id = mappings.services_id();
        if last.services_id == id && last.value == value {
            out.push_str(&last.rewritten);
            return Ok(last.services);
        }
        let at = out.len();
        let services = rewrite_to_simple(value, mappings, out, None, memo)?;
        // Errors are not remembered: a value that fails is read again, and fails the same way.
        last.services_id = id;
        last.value.clear();
        last.value.push_str(value);
        last.rewritten.clear();
        last.rewritten.push_str(out.get(at..).unwrap_or_default());
        last.services = services;
        Ok(services)
    })
}

/// The last value a thread rewrote for the SIMPLE side without reading the device, and what
/// the rewrite gave: the services found and the text appended. `services_id` 0 (no mappings
/// has it): nothing remembered yet.
struct LastToSimple {
    services_id: u64,
    value: String,
    rewritten: String,
    services: ServiceList,
}

impl LastToSimple {
    /// Longer values are not remembered (the memo's memory stays small: two strings of at most
    /// about this and what the rewrite adds).
    const MAX_VALUE: usize = 256;
}

thread_local! {
    static LAST_TO_SIMPLE: std::cell::RefCell<LastToSimple> = const {
        std::cell::RefCell::new(LastToSimple {
            services_id: 0,
            value: String::new(),
            rewritten: String::new(),
            services: ServiceList {
                list: [None; Service::ALL.len()],
            },
        })
    };
}

/// Feature tags kept from one contact, remembered by name; past this many the parameters are
/// read again (or, on the usual path, left to the general reading).
const PLUS_KEPT: usize = 8;

/// The rewrite: the usual Contact by [`rewrite_usual`], any other value (and every error) by
/// [`rewrite_general`], which gives the same for the usual one.
fn rewrite_to_simple<'v>(
    value: &'v str,
    mappings: &Mappings,
    out: &mut String,
    device: Option<&mut DeviceParts>,
    memo: &mut IcsiMemo<'v>,
) -> Result<ServiceList, ParamError> {
    let at = out.len();
    match usual_contact(value, mappings, out, memo) {
        Some((services, parts)) => {
            if let Some(d) = device {
                *d = parts;
            }
            Ok(services)
        }
        None => {
            // Nothing of the usual reading is kept (the memo it filled is right for any value).
            out.truncate(at);
            rewrite_general(value, mappings, out, device, memo)
        }
    }
}

/// The usual `Contact` of a CPM request (RFC 3261 §20.10 `name-addr` without display name, as
/// clients write it): one `<URI>`, then `;`-parameters with no white space around them, no
/// empty one, no `<` or `,` outside quotes, no quoted-pair (`\`), and at most [`PLUS_KEPT`]
/// feature tags; `+g.3gpp.icsi-ref="..."` recognized by its first bytes (TS 24.229 §7.2A.8)
/// and its value read once. Appends to `out` what [`rewrite_general`] appends and gives its
/// services and device parts; `None` for any other value (or an error), with `out` holding
/// part of it (the caller truncates). The split is that of [`split_top_either`]: a `<` first
/// has its `>` next, a `;` outside quotes ends a parameter, a `"` opens a quoted string.
fn usual_contact<'v>(
    value: &'v str,
    mappings: &Mappings,
    out: &mut String,
    memo: &mut IcsiMemo<'v>,
) -> Option<(ServiceList, DeviceParts)> {
    /// The parameter as clients write it, up to its opening quote.
    const ICSI_QUOTED: &[u8; 18] = b"+g.3gpp.icsi-ref=\"";
    let b = value.as_bytes();
    if b.first() != Some(&b'<') {
        return None;
    }
    let gt = text::find_byte(b'>', b.get(1..)?)? + 1;
    // Ends with `>`: nothing to trim.
    out.push_str(value.get(..=gt)?);
    let mut services = ServiceList::default();
    let mut plus: [&str; PLUS_KEPT] = [""; PLUS_KEPT];
    let mut plus_len = 0usize;
    let mut instance = None;
    let mut count = 0usize;
    // At a `;` (a parameter follows) or the end of the value.
    let mut i = gt + 1;
    while let Some(&c) = b.get(i) {
        // After `>` or a parameter: anything but `;` (a `,`, white space, more after a closing
        // quote) is for the general reading.
        if c != b';' {
            return None;
        }
        let s = i + 1;
        if b.get(s..s + ICSI_QUOTED.len()) == Some(&ICSI_QUOTED[..]) {
            // `+g.3gpp.icsi-ref="v"`: the name and value as `param_name` and `param_value`
            // read them, the quoted string ended as the split ends it.
            let from = s + ICSI_QUOTED.len();
            let q = from + text::find_byte2(b'"', b'\\', b.get(from..)?)?;
            if b.get(q) != Some(&b'"') {
                return None;
            }
            count += 1;
            add_icsi_services(value.get(from..q)?, mappings, memo, &mut services);
            i = q + 1;
            continue;
        }
        // Any other parameter: up to the next `;` outside quotes.
        let mut j = s;
        let end = loop {
            let Some(off) = text::find_byte4(b';', b',', b'"', b'<', b.get(j..)?) else {
                break b.len();
            };
            let at = j + off;
            match b.get(at)? {
                b';' => break at,
                b'"' => {
                    let q = at + 1 + text::find_byte2(b'"', b'\\', b.get(at + 1..)?)?;
                    if b.get(q) != Some(&b'"') {
                        return None;
                    }
                    j = q + 1;
                }
                _ => return None,
            }
        };
        let p = value.get(s..end)?;
        // As `trim` leaves it, and not empty (the general reading trims and skips those).
        match (p.as_bytes().first(), p.as_bytes().last()) {
            (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => {}
            _ => return None,
        }
        count += 1;
        i = end;
        let name = param_name(p);
        if is_named(name, ICSI_REF) {
            if let Some(v) = param_value(p) {
                add_icsi_services(v, mappings, memo, &mut services);
            }
            continue;
        }
        if name.starts_with('+') {
            if instance.is_none() && is_named(name, SIP_INSTANCE) {
                instance = Some(s..end);
            }
            *plus.get_mut(plus_len)? = name;
            plus_len += 1;
        }
        out.push(';');
        out.push_str(p);
    }
    if count > MAX_PARAMS {
        return None;
    }
    let mut written = ServiceList::default();
    for s in services.iter() {
        let tag = &mappings.service(s).simple_feature_tag;
        let kept = plus
            .get(..plus_len)
            .unwrap_or_default()
            .iter()
            .any(|n| n.eq_ignore_ascii_case(tag));
        push_simple_tag(out, &mut written, s, kept, mappings);
    }
    // One contact: the value's services are its own.
    let parts = DeviceParts {
        head: 0..gt + 1,
        uri: Some(1..gt),
        instance,
    };
    Some((services, parts))
}

/// Add the services an ICSI list `v` names to `services`, as `services_in_icsi_ref` adds them
/// (in order, each service once), read once per request (`memo`).
#[inline]
fn add_icsi_services<'v>(
    v: &'v str,
    mappings: &Mappings,
    memo: &mut IcsiMemo<'v>,
    services: &mut ServiceList,
) {
    let found = match memo.0 {
        Some((seen, found)) if seen == v => found,
        _ => {
            let found = icsi_services(v, mappings);
            memo.0 = Some((v, found));
            found
        }
    };
    match services.first() {
        // The usual case: the contact's first ICSI list.
        None => *services = found,
        Some(_) => found.iter().for_each(|s| services.push(s)),
    }
}

/// Append service `s`'s SIMPLE IM feature tag to a contact being rewritten, unless the contact
/// `kept` it already or a service written before shares it (chat and pager share
/// `+g.oma.sip-im`: written once, RFC 3840 §9).
#[inline(always)]
fn push_simple_tag(
    out: &mut String,
    written: &mut ServiceList,
    s: Service,
    kept: bool,
    mappings: &Mappings,
) {
    let tag = &mappings.service(s).simple_feature_tag;
    let again = written.iter().any(|w| {
        mappings
            .service(w)
            .simple_feature_tag
            .eq_ignore_ascii_case(tag)
    });
    if !kept && !again {
        out.push(';');
        out.push_str(tag);
        written.push(s);
    }
}

/// The rewrite of any value, contact by contact (the reference for [`usual_contact`]).
fn rewrite_general<'v>(
    value: &'v str,
    mappings: &Mappings,
    out: &mut String,
    mut device: Option<&mut DeviceParts>,
    memo: &mut IcsiMemo<'v>,
) -> Result<ServiceList, ParamError> {
    let mut all = ServiceList::default();
    let mut parts = split_top_either(value, b';', b',');
    let base = value.as_ptr() as usize;
    let mut first = true;
    // One contact a turn: its head, then its parameters up to a `,` or the end.
    while let Some(head) = parts.next() {
        let (head, mut sep) = head?;
        if !first {
            out.push(',');
        }
        // Where this contact lies in `value` (parts are slices of it), to read it again.
        let start = (head.as_ptr() as usize).wrapping_sub(base);
        let mut end = start.wrapping_add(head.len());
        // The sending device is named by the first contact (RFC 3261 §8.1.1.8): taken on the
        // first turn only.
        let mut first_device = device.take().map(|d| {
            *d = DeviceParts {
                head: start..end,
                uri: parts.angle(),
                instance: None,
            };
            d
        });
        first = false;
        out.push_str(head.trim_end());
        let mut services = ServiceList::default();
        let mut plus: [&str; PLUS_KEPT] = [""; PLUS_KEPT];
        let (mut plus_len, mut plus_overflow) = (0usize, false);
        let mut count = 0usize;
        while sep == Some(b';') {
            let (p, next) = parts.next().unwrap_or(Ok(("", None)))?;
            sep = next;
            end = (p.as_ptr() as usize)
                .wrapping_sub(base)
                .wrapping_add(p.len());
            let p = trim(p);
            if p.is_empty() {
                continue;
            }
            count += 1;
            let name = param_name(p);
            if is_named(name, ICSI_REF) {
                if let Some(v) = param_value(p) {
                    add_icsi_services(v, mappings, memo, &mut services);
                }
                continue;
            }
            if name.starts_with('+') {
                if let Some(d) = first_device.as_deref_mut()
                    && d.instance.is_none()
                    && is_named(name, SIP_INSTANCE)
                {
                    let at = (p.as_ptr() as usize).wrapping_sub(base);
                    d.instance = Some(at..at.wrapping_add(p.len()));
                }
                match plus.get_mut(plus_len) {
                    Some(slot) => {
                        *slot = name;
                        plus_len += 1;
                    }
                    None => plus_overflow = true,
                }
            }
            out.push(';');
            out.push_str(p);
        }
        if count > MAX_PARAMS {
            // An unterminated quote or `<` anywhere is the error, whatever comes before it.
            check_split(parts.rest(), b',')?;
            return Err(ParamError::TooManyParams);
        }
        let mut written = ServiceList::default();
        for s in services.iter() {
            let tag = &mappings.service(s).simple_feature_tag;
            let kept = if plus_overflow {
                let part = value.get(start..end).unwrap_or_default();
                Contact::parse(part)?.params().any(|p| {
                    let name = param_name(p);
                    !name.eq_ignore_ascii_case(ICSI_REF) && name.eq_ignore_ascii_case(tag)
                })
            } else {
                plus.get(..plus_len)
                    .unwrap_or_default()
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(tag))
            };
            push_simple_tag(out, &mut written, s, kept, mappings);
            all.push(s);
        }
        if sep.is_none() {
            break;
        }
    }
    Ok(all)
}

/// Rewrite a SIMPLE `Contact` / `Accept-Contact` value for the CPM side: the SIMPLE IM feature
/// tags are removed and `+g.3gpp.icsi-ref` naming `service` (escaped form, TS 24.229 §7.2A.8)
/// is written instead. `service` comes from the request's classification
/// (docs/interworking-notes.md §1.4), since `+g.oma.sip-im` alone names several services.
pub fn to_cpm(value: &str, service: Service, mappings: &Mappings) -> Result<String, ParamError> {
    let escaped = &mappings.service(service).cpm_icsi_escaped;
    let mut out = String::with_capacity(value.len() + ICSI_REF.len() + escaped.len() + 3);
    to_cpm_into(value, service, mappings, &mut out)?;
    Ok(out)
}

/// [`to_cpm`] appending to `out`. One pass over the value ([`split_top_either`]: each
/// contact's head and parameters as they come), the same output and errors as reading it
/// contact by contact (an unterminated quote or `<` anywhere is the error, before too many
/// parameters on one contact; the tests keep that reading as the reference). On an error `out`
/// may hold part of the value.
pub fn to_cpm_into(
    value: &str,
    service: Service,
    mappings: &Mappings,
    out: &mut String,
) -> Result<(), ParamError> {
    let escaped = &mappings.service(service).cpm_icsi_escaped;
    let mut parts = split_top_either(value, b';', b',');
    let mut first = true;
    while let Some(head) = parts.next() {
        let (head, mut sep) = head?;
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(head.trim_end());
        let mut count = 0usize;
        while sep == Some(b';') {
            let (p, next) = parts.next().unwrap_or(Ok(("", None)))?;
            sep = next;
            let p = trim(p);
            if p.is_empty() {
                continue;
            }
            count += 1;
            // An icsi-ref already there (an RCS-lineage SIMPLE client) is replaced, not
            // doubled.
            let name = param_name(p);
            if is_simple_tag(name, mappings) || name.eq_ignore_ascii_case(ICSI_REF) {
                continue;
            }
            out.push(';');
            out.push_str(p);
        }
        if count > MAX_PARAMS {
            check_split(parts.rest(), b',')?;
            return Err(ParamError::TooManyParams);
        }
        out.push(';');
        out.push_str(ICSI_REF);
        out.push_str("=\"");
        out.push_str(escaped);
        out.push('"');
        if sep.is_none() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Mappings {
        Mappings::embedded().expect("embedded mappings")
    }

    const CHAT: &str = "urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session";

    /// The embedded mappings with other SIMPLE IM tags for pager and chat.
    fn other_tags() -> Mappings {
        let services = include_str!("../../mappings/services.toml").replace(
            "simple_feature_tag = \"+g.oma.sip-im\"",
            "simple_feature_tag = \"+g.other\"",
        );
        Mappings::from_sources(
            ("services.toml", &services),
            ("headers.toml", include_str!("../../mappings/headers.toml")),
            ("content.toml", include_str!("../../mappings/content.toml")),
        )
        .expect("mappings")
    }

    /// The embedded mappings with another ICSI for the pager service.
    fn other_icsi() -> Mappings {
        let services = include_str!("../../mappings/services.toml").replace(
            "cpm_icsi = \"urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\"",
            "cpm_icsi = \"urn:urn-7:3gpp-service.ims.icsi.oma.cpm.other\"",
        );
        Mappings::from_sources(
            ("services.toml", &services),
            ("headers.toml", include_str!("../../mappings/headers.toml")),
            ("content.toml", include_str!("../../mappings/content.toml")),
        )
        .expect("mappings")
    }

    /// An ICSI list remembered under one set of services is not reused under another.
    #[test]
    fn icsi_memo_is_per_set_of_services() {
        let value = "urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg";
        let (one, other) = (m(), other_icsi());
        for _ in 0..2 {
            assert_eq!(icsi_services(value, &one).first(), Some(Service::Pager));
            assert_eq!(icsi_services(value, &other).first(), None);
            assert_eq!(
                icsi_services(value, &one.clone()).first(),
                Some(Service::Pager)
            );
        }
    }

    /// A value remembered under one set of services is not reused under another.
    #[test]
    fn thread_memo_is_per_set_of_services() {
        let value = "*;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\";require;explicit";
        let run = |m: &Mappings| {
            let mut out = String::new();
            to_simple_into_with(value, m, &mut out, None, &mut IcsiMemo::default()).map(|_| out)
        };
        let (one, other) = (m(), other_tags());
        let want_one = "*;require;explicit;+g.oma.sip-im";
        let want_other = "*;require;explicit;+g.other";
        for _ in 0..2 {
            assert_eq!(run(&one).as_deref(), Ok(want_one));
            assert_eq!(run(&one.clone()).as_deref(), Ok(want_one));
            assert_eq!(run(&other).as_deref(), Ok(want_other));
        }
    }

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

    /// The rewrite as first written (a `Vec` per split), kept as the reference.
    #[test]
    fn one_pass_rewrite_matches_the_reference_on_long_contacts() {
        let mappings = m();
        let icsi = "+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"";
        let plus = (0..9).map(|i| format!(";+t{i}")).collect::<String>();
        let many = (0..MAX_PARAMS + 1)
            .map(|i| format!(";p{i}"))
            .collect::<String>();
        for v in [
            // More feature tags than remembered, the SIMPLE one among them or not.
            format!("<sip:a@x>;{icsi}, <sip:b@y>{plus};+g.oma.sip-im;{icsi};q=1"),
            format!("<sip:b@y>{plus};{icsi}, *;{icsi}{plus};+G.OMA.SIP-IM"),
            // Too many parameters, and an unterminated value after them: the latter wins.
            format!("<sip:a@x>{many}"),
            format!("<sip:a@x>{many}, <sip:b@y"),
            format!("<sip:a@x>{many}, \"open"),
            format!("<sip:a@x>;{icsi}, <sip:b@y>{many}"),
        ] {
            assert_eq!(
                to_simple(&v, &mappings),
                reference_to_simple(&v, &mappings),
                "{v}"
            );
        }
        assert_eq!(
            to_simple(&format!("<sip:a@x>{many}, <sip:b@y"), &mappings),
            Err(ParamError::Unterminated)
        );
    }

    fn reference_to_simple(
        value: &str,
        mappings: &Mappings,
    ) -> Result<(String, Vec<Service>), ParamError> {
        use crate::translate::params::{ContactParams, split_top};
        let mut out = String::with_capacity(value.len());
        let mut all = Vec::new();
        for (i, part) in split_top(value, b',')?.into_iter().enumerate() {
            let mut contact = ContactParams::parse(part)?;
            let mut services = Vec::new();
            contact.params.retain(|p| {
                let icsi = param_name(p).eq_ignore_ascii_case(ICSI_REF);
                if icsi && let Some(v) = param_value(p) {
                    for icsi in v.split(',').map(str::trim) {
                        if let Some(s) = mappings.service_by_icsi(icsi)
                            && !services.contains(&s)
                        {
                            services.push(s);
                        }
                    }
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

    /// [`to_cpm_into`] as it was (checked, then contact by contact), kept as the reference.
    fn reference_to_cpm_into(
        value: &str,
        service: Service,
        mappings: &Mappings,
        out: &mut String,
    ) -> Result<(), ParamError> {
        let escaped = &mappings.service(service).cpm_icsi_escaped;
        check_split(value, b',')?;
        for (i, part) in split_top_iter(value, b',').enumerate() {
            let contact = Contact::parse(part?)?;
            if i > 0 {
                out.push(',');
            }
            out.push_str(contact.head.trim_end());
            // An icsi-ref already there (an RCS-lineage SIMPLE client) is replaced, not doubled.
            for p in contact.params() {
                let name = param_name(p);
                if is_simple_tag(name, mappings) || name.eq_ignore_ascii_case(ICSI_REF) {
                    continue;
                }
                out.push(';');
                out.push_str(p);
            }
            out.push(';');
            out.push_str(ICSI_REF);
            out.push_str("=\"");
            out.push_str(escaped);
            out.push('"');
        }
        Ok(())
    }

    /// Too many parameters on one contact, and an unterminated quote after them: the errors
    /// of the reference, in its order.
    #[test]
    fn to_cpm_errors_are_the_reference_ones() {
        let many = (0..MAX_PARAMS + 1)
            .map(|i| format!(";p{i}"))
            .collect::<String>();
        let mappings = m();
        for v in [
            format!("<sip:a@x>{many}"),
            format!("<sip:a@x>{many}, <sip:b@y>;x=\"open"),
            format!("<sip:b@y>, <sip:a@x>{many}"),
            "<sip:a@x".to_string(),
        ] {
            let one = to_cpm_into(&v, Service::Pager, &mappings, &mut String::new());
            let two = reference_to_cpm_into(&v, Service::Pager, &mappings, &mut String::new());
            assert_eq!(one, two, "{v}");
            assert!(one.is_err());
        }
    }

    /// The usual Contacts are read by [`usual_contact`] (the vector's, and with the device's
    /// instance and other feature tags).
    #[test]
    fn usual_contacts_take_the_usual_path() {
        let mappings = m();
        for v in [
            "<sip:+15557654321@192.0.2.10:5060;transport=tcp>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"",
            "<sip:a@x;gr=urn:uuid:1>;+sip.instance=\"<urn:uuid:1>\";+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session\";expires=600",
            "<sip:a@x>",
        ] {
            let mut out = String::new();
            let usual = usual_contact(v, &mappings, &mut out, &mut IcsiMemo::default());
            assert!(usual.is_some(), "{v}");
        }
    }

    proptest::proptest! {
        // The usual Contact's reading, when it answers, is the general one: the same text
        // appended, the same services, the same device parts.
        #[test]
        fn usual_contact_is_the_general_one(
            v in "(<sip:a@x;lr>|<sip:b@y>|<)(;|,| |\"|<|>|=|\\\\|\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.(msg|session|largemsg)(,urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg)?\"|\\+g\\.3gpp\\.icsi-ref=|\\+G\\.3GPP\\.ICSI-REF=x|\\+g\\.oma\\.sip-im|\\+G\\.OMA\\.SIP-IM|\\+sip\\.instance=\"<urn:uuid:1>\"|\\+SIP\\.INSTANCE=x|\\+t[0-9]|q=\"a;,b\"|x=1){0,16}"
        ) {
            for mappings in [m(), other_tags()] {
                let mut one = String::from("prefix");
                let usual = usual_contact(&v, &mappings, &mut one, &mut IcsiMemo::default());
                if let Some((services, parts)) = usual {
                    let mut two = String::from("prefix");
                    let mut device = DeviceParts::default();
                    let general = rewrite_general(
                        &v,
                        &mappings,
                        &mut two,
                        Some(&mut device),
                        &mut IcsiMemo::default(),
                    );
                    proptest::prop_assert_eq!(
                        general.map(|l| l.iter().collect::<Vec<_>>()),
                        Ok(services.iter().collect::<Vec<_>>())
                    );
                    proptest::prop_assert_eq!(one, two);
                    proptest::prop_assert_eq!(parts, device);
                }
            }
        }

        // The one-pass CPM rewrite gives what the reference gives, errors included.
        #[test]
        fn to_cpm_matches_the_reference(
            v in "(<sip:a@x;lr>|\\*|\"q;,\"|;|,| |\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.msg\"|\\+g\\.oma\\.sip-im|\\+G\\.OMA\\.SIP-IM|require|x=1|<|\"|;p){0,16}"
        ) {
            let mappings = m();
            for service in [Service::Pager, Service::Chat] {
                let mut one = String::new();
                let one = to_cpm_into(&v, service, &mappings, &mut one).map(|()| one);
                let mut two = String::new();
                let two = reference_to_cpm_into(&v, service, &mappings, &mut two).map(|()| two);
                proptest::prop_assert_eq!(one, two);
            }
        }

        // The in-place rewrite gives what the reference gives, shared or not.
        #[test]
        fn in_place_rewrite_matches_the_reference(
            v in "(<sip:a@x;lr>|\\*|\"q;,\"|;|,| |\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.(msg|session|largemsg)(,urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg)?\"|\\+g\\.oma\\.sip-im|require|x=1|<){0,12}"
        ) {
            let mappings = m();
            let expected = reference_to_simple(&v, &mappings);
            proptest::prop_assert_eq!(&to_simple(&v, &mappings), &expected);
            let shared = to_simple_text(&Text::copy_from_str(&v), &mappings);
            proptest::prop_assert_eq!(shared.map(|t| t.to_string()), expected.map(|(s, _)| s));
        }

        // A memo shared by the values of one request (as the leg shares it between Contact
        // and Accept-Contact) changes nothing: each value rewrites and reads as on its own.
        #[test]
        fn shared_memo_is_the_fresh_reading(
            a in "(<sip:a@x>|\\*|;|,|\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.(msg|session)(,urn:urn-7:3gpp-service.ims.icsi.oma.cpm.largemsg)?\"|\\+g\\.oma\\.sip-im|x=1){0,10}",
            b in "(<sip:b@y>|\\*|;|,|\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.(msg|session)(,urn:urn-7:3gpp-service.ims.icsi.oma.cpm.largemsg)?\"|\\+g\\.oma\\.sip-im|x=1){0,10}"
        ) {
            let mappings = m();
            let fresh = |v: &str| {
                let mut out = String::new();
                to_simple_into(v, &mappings, &mut out).map(|l| (out, l.iter().collect::<Vec<_>>()))
            };
            let mut memo = IcsiMemo::default();
            for v in [&a, &b, &a] {
                let mut out = String::new();
                let with = to_simple_into_with(v, &mappings, &mut out, None, &mut memo)
                    .map(|l| (out, l.iter().collect::<Vec<_>>()));
                proptest::prop_assert_eq!(with, fresh(v));
            }
        }

        // The thread's memo of the last value rewritten without the device (`LastToSimple`)
        // changes nothing: values repeated, alternated, and read under two sets of services
        // (the memo is keyed by them) give what a fresh rewrite gives, errors included, and
        // append the same bytes after whatever `out` holds.
        #[test]
        fn thread_memo_is_the_fresh_reading(
            a in "(<sip:a@x>|\\*|;|,| |\"|\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.(msg|session)(,urn:urn-7:3gpp-service.ims.icsi.oma.cpm.largemsg)?\"|\\+g\\.oma\\.sip-im|\\+sip\\.instance=\"<urn:x>\"|require|explicit|x=1){0,10}",
            b in "(<sip:b@y>|\\*|;|,|\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.(msg|session)\"|\\+g\\.oma\\.sip-im|require|x=1){0,10}",
            order in proptest::collection::vec((0usize..2, proptest::bool::ANY), 1..8)
        ) {
            let (one, other) = (m(), other_tags());
            for (which, alt) in order {
                let v = [&a, &b][which];
                let mappings = if alt { &other } else { &one };
                let mut fresh = String::from("prefix");
                let fresh = rewrite_to_simple(v, mappings, &mut fresh, None, &mut IcsiMemo::default())
                    .map(|l| (fresh, l.iter().collect::<Vec<_>>()));
                let mut out = String::from("prefix");
                let with = to_simple_into_with(v, mappings, &mut out, None, &mut IcsiMemo::default())
                    .map(|l| (out, l.iter().collect::<Vec<_>>()));
                proptest::prop_assert_eq!(with, fresh);
            }
        }

        // The thread's memo of the last ICSI list (`LastIcsi`) changes nothing: lists
        // repeated, alternated and read under two sets of services name the services
        // `services_in_icsi_ref` finds.
        #[test]
        fn icsi_memo_is_the_fresh_reading(
            lists in proptest::collection::vec(
                "(urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.(msg|session|largemsg|other)|urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg| |,|x){0,4}",
                1..4,
            ),
            order in proptest::collection::vec((0usize..4, proptest::bool::ANY), 1..10)
        ) {
            let (one, other) = (m(), other_icsi());
            for (which, alt) in order {
                let Some(v) = lists.get(which % lists.len()) else { continue };
                let mappings = if alt { &other } else { &one };
                let mut fresh = ServiceList::default();
                services_in_icsi_ref(v, mappings, &mut fresh);
                let memo = icsi_services(v, mappings);
                proptest::prop_assert_eq!(
                    memo.iter().collect::<Vec<_>>(),
                    fresh.iter().collect::<Vec<_>>()
                );
            }
        }

        // The leg's one-pass reading (rewrite, then share the value when the rewrite gave it
        // back byte for byte) against the two-pass one (`to_simple_keeps`, then the rewrite):
        // the same errors, and every value `to_simple_keeps` keeps is kept. (The one pass also
        // shares a value that mentions the tag only where it is not a parameter, inside a
        // `<URI>`: the rewrite gives it back unchanged, so the bytes sent are the same.)
        #[test]
        fn rewrite_equal_to_value_is_keeps(
            v in "(<sip:a@x;lr>|<sip:a@x;\\+g\\.3gpp\\.icsi-ref=1>|\\*|\"q;,\"|;|,| |\\+g\\.3gpp\\.icsi-ref=\"urn%3Aurn-7%3A3gpp-service\\.ims\\.icsi\\.oma\\.cpm\\.(msg|session)\"|\\+G\\.3GPP\\.ICSI-REF|\\+g\\.oma\\.sip-im|\\+sip\\.instance=\"<urn:x>\"|require|x=1|<|\"){0,12}"
        ) {
            let mappings = m();
            let mut out = String::from("prefix");
            let one_pass = to_simple_into(&v, &mappings, &mut out)
                .map(|_| out.get("prefix".len()..) == Some(v.as_str()));
            let two_pass = to_simple_keeps(&v).and_then(|keeps| {
                to_simple_into(&v, &mappings, &mut String::new()).map(|_| keeps)
            });
            match (one_pass, two_pass) {
                (Err(a), Err(b)) => proptest::prop_assert_eq!(a, b),
                (Ok(kept), Ok(keeps)) => {
                    proptest::prop_assert!(kept || !keeps);
                    proptest::prop_assert!(kept == keeps || mentions_icsi_ref(&v));
                }
                (one, two) => proptest::prop_assert!(false, "{one:?} against {two:?}"),
            }
        }

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
