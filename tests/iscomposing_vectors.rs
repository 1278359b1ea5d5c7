//! Every file in tests/vectors/iscomposing is parsed and gets the outcome its README.md
//! documents.

use bytes::Bytes;
use cpm_iwf::wire::iscomposing::{self, IsComposing, State};
use cpm_iwf::wire::{Answer, WireError};

fn load(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/vectors/iscomposing/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn ok(name: &str) -> IsComposing {
    let x = iscomposing::parse(load(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(iscomposing::parse(x.to_bytes()).unwrap(), x, "{name}");
    x
}

fn refused(name: &str, status: u16, text: &str) {
    let err = iscomposing::parse(load(name)).expect_err(name);
    assert_eq!(err.answer(), Answer::Status(status), "{name}: {err}");
    assert!(err.to_string().contains(text), "{name}: {err}");
    assert!(err.offset().is_some(), "{name}");
}

#[test]
fn rfc3994_examples() {
    let a = ok("rfc3994-5-active.txt");
    assert_eq!(
        a,
        IsComposing::active(Some(90)).with_contenttype("text/plain")
    );
    let i = ok("rfc3994-5-idle.txt");
    assert_eq!(i.state, State::Idle);
    assert_eq!(i.lastactive.as_deref(), Some(&b"2003-01-27T10:43:00Z"[..]));
    assert_eq!(i.contenttype.as_deref(), Some(&b"audio"[..]));
    assert_eq!(i.refresh, None);
}

#[test]
fn in_the_wild() {
    let x = ok("wild-rcs-crlf-schema-location.txt");
    assert_eq!(x.state, State::Active);
    assert_eq!(x.refresh, Some(60));
    assert_eq!(
        x.lastactive.as_deref(),
        Some(&b"2015-10-28T05:14:29.000Z"[..])
    );
    let x = ok("wild-namespace-case.txt");
    assert_eq!(x, IsComposing::active(None).with_contenttype("text/plain"));
    assert_eq!(ok("wild-bare-minimum.txt"), IsComposing::idle(None));
    let x = ok("wild-idle-with-refresh-and-extension.txt");
    assert_eq!(x.state, State::Idle);
    assert_eq!(x.refresh, Some(60));
    assert_eq!(
        x.extensions,
        vec![Bytes::from_static(
            b"<v:device xmlns:v=\"urn:example:vendor:typing\">tablet</v:device>"
        )]
    );
}

#[test]
fn refused_vectors() {
    refused("bad-state-typing.txt", 400, "expected active or idle");
    refused("bad-missing-state.txt", 400, "has no <state>");
    refused("bad-refresh-zero.txt", 400, "<refresh> is \"0\"");
    refused("bad-doctype-billion-laughs.txt", 400, "DOCTYPE");
    refused("bad-no-namespace.txt", 415, "no namespace");
}

#[test]
fn every_vector_is_covered() {
    let dir = format!("{}/tests/vectors/iscomposing", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(format!("{dir}/README.md")).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".txt") {
            assert!(
                readme.contains(&name),
                "{name} is not documented in README.md"
            );
        }
    }
}
