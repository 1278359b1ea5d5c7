//! Addresses in `From`, `To` and `Contact` values (RFC 3261 §20.10, §25.1): the URI inside a
//! `name-addr` or `addr-spec`, the canonical address of record, and the `tag` parameter a
//! back-to-back user agent writes anew on each leg.

use super::params::{ContactParams, ParamError, param_name};

/// The URI of a `From` / `To` / `Contact` value: inside `<...>` when present; otherwise the
/// `addr-spec` up to its first `;` (header parameters then follow it, RFC 3261 §20.10).
pub fn uri_of(value: &str) -> &str {
    // The display name may be a quoted string holding `<` (RFC 3261 §25.1 quoted-string).
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, b) in value.bytes().enumerate() {
        match (in_quotes, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => in_quotes = !in_quotes,
            (false, _, b'<') => {
                let rest = value.get(i + 1..).unwrap_or_default();
                return rest.split('>').next().unwrap_or_default().trim();
            }
            _ => {}
        }
    }
    value.split(';').next().unwrap_or_default().trim()
}

/// The canonical address of record of a URI: scheme and host lower-cased, without port, URI
/// parameters or headers (`sip:Alice@Example.COM:5060;transport=tcp` ->
/// `sip:Alice@example.com`). The user part is case-sensitive (RFC 3261 §19.1.4) and kept.
pub fn aor(uri: &str) -> String {
    let no_headers = uri.split('?').next().unwrap_or_default();
    let no_params = no_headers.split(';').next().unwrap_or_default();
    let Some((scheme, rest)) = no_params.split_once(':') else {
        return no_params.to_ascii_lowercase();
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        // tel:, im:, and others: no host part to normalise.
        return format!("{scheme}:{rest}");
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u.split(':').next().unwrap_or_default()), h),
        None => (None, rest),
    };
    // An IPv6 reference keeps its brackets; the port follows the last `:` outside them.
    let host = match hostport.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => hostport.split(':').next().unwrap_or_default().to_string(),
    }
    .to_ascii_lowercase();
    match user {
        Some(u) => format!("{scheme}:{u}@{host}"),
        None => format!("{scheme}:{host}"),
    }
}

/// `value` with its `tag` parameter replaced by `tag`, or removed when `tag` is `None` (a new
/// leg's To has no tag until the far end answers, RFC 3261 §8.1.1.2).
pub fn with_tag(value: &str, tag: Option<&str>) -> Result<String, ParamError> {
    let mut parsed = ContactParams::parse(value)?;
    parsed
        .params
        .retain(|p| !param_name(p).eq_ignore_ascii_case("tag"));
    let mut out = String::with_capacity(value.len() + tag.map_or(0, |t| t.len() + 5));
    parsed.write(&[], &mut out);
    if let Some(t) = tag {
        out.push_str(";tag=");
        out.push_str(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_aor() {
        assert_eq!(
            uri_of("\"Alice <x>\" <sip:alice@a.example;transport=tcp>;tag=1"),
            "sip:alice@a.example;transport=tcp"
        );
        assert_eq!(uri_of("sip:bob@b.example;tag=9"), "sip:bob@b.example");
        assert_eq!(
            aor("SIP:Alice@Example.COM:5060;transport=tcp?subject=x"),
            "sip:Alice@example.com"
        );
        assert_eq!(
            aor("sip:+4917012345@IMS.example;user=phone"),
            "sip:+4917012345@ims.example"
        );
        assert_eq!(
            aor("sip:alice:secret@[2001:DB8::1]:5061"),
            "sip:alice@[2001:db8::1]"
        );
        assert_eq!(aor("tel:+4917012345"), "tel:+4917012345");
        assert_eq!(aor("sip:example.com"), "sip:example.com");
    }

    #[test]
    fn tags_are_replaced_or_removed() {
        assert_eq!(
            with_tag("<sip:a@x>;tag=abc;foo=1", Some("n3w")).unwrap(),
            "<sip:a@x>;foo=1;tag=n3w"
        );
        assert_eq!(
            with_tag("<sip:a@x;tag=uri>", None).unwrap(),
            "<sip:a@x;tag=uri>"
        );
        assert_eq!(with_tag("sip:b@y;TAG=z", None).unwrap(), "sip:b@y");
    }
}
