//! Every file in tests/vectors/reginfo is parsed and gets the outcome its README.md documents.

use bytes::Bytes;
use cpm_iwf::wire::reginfo::{
    self, ContactEvent, ContactState, DocState, Reginfo, RegistrationState,
};
use cpm_iwf::wire::{Answer, WireError};

fn load(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/vectors/reginfo/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn ok(name: &str) -> Reginfo {
    let r = reginfo::parse(load(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    // The canonical form parses back to the same model and is a fixed point.
    let canon = r.to_bytes();
    let back = reginfo::parse(canon.clone()).unwrap();
    assert_eq!(back, r, "{name}");
    assert_eq!(back.to_bytes(), canon, "{name}");
    r
}

fn refused(name: &str, status: u16, text: &str) {
    let err = reginfo::parse(load(name)).expect_err(name);
    assert_eq!(err.answer(), Answer::Status(status), "{name}: {err}");
    assert!(err.to_string().contains(text), "{name}: {err}");
    assert!(err.offset().is_some(), "{name}");
}

#[test]
fn rfc3680_examples() {
    let r = ok("rfc3680-5.3-example.txt");
    assert_eq!((r.version, r.state), (0, DocState::Full));
    let reg = &r.registrations[0];
    assert_eq!(&reg.aor[..], b"sip:user@example.com");
    assert_eq!(&reg.id[..], b"as9");
    assert_eq!(reg.state, RegistrationState::Active);
    let [a, b] = &reg.contacts[..] else {
        panic!("two contacts")
    };
    assert_eq!(
        (&a.id[..], a.state, a.event, a.duration_registered),
        (
            &b"76"[..],
            ContactState::Active,
            ContactEvent::Registered,
            Some(7322)
        )
    );
    assert_eq!(a.q.as_deref(), Some(&b"0.8"[..]));
    assert_eq!(&a.uri[..], b"sip:user@pc887.example.com");
    assert_eq!(
        (b.state, b.event, &b.uri[..]),
        (
            ContactState::Terminated,
            ContactEvent::Expired,
            &b"sip:user@university.edu"[..]
        )
    );

    let r = ok("rfc3680-6-f2-init.txt");
    assert_eq!((r.version, r.state), (0, DocState::Full));
    assert_eq!(r.registrations[0].state, RegistrationState::Init);
    assert!(r.registrations[0].contacts.is_empty());

    let r = ok("rfc3680-6-f5-registered.txt");
    assert_eq!((r.version, r.state), (1, DocState::Partial));
    let reg = &r.registrations[0];
    assert_eq!(
        (&reg.aor[..], reg.state),
        (&b"sip:joe@example.com"[..], RegistrationState::Active)
    );
    assert_eq!(&reg.contacts[0].uri[..], b"sip:joe@pc34.example.com");
    assert_eq!(reg.contacts[0].duration_registered, Some(0));
}

#[test]
fn ts24229_style() {
    let r = ok("ts24229-gruu-instance.txt");
    assert_eq!(r.registrations.len(), 2);
    let c = &r.registrations[0].contacts[0];
    assert_eq!(
        c.instance().as_deref(),
        Some(&b"urn:gsma:imei:35123456-123456-0"[..])
    );
    assert_eq!(
        c.param("+g.3gpp.accesstype").map(|v| &v[..]),
        Some(&b"\"cellular\""[..])
    );
    assert_eq!(c.param("+g.oma.sip-im").map(|v| v.len()), Some(0));
    assert_eq!(c.unknown_params.len(), 4);
    assert_eq!(
        c.pub_gruu.as_deref(),
        Some(&b"sip:+15551230001@ims.example.net;gr=urn:gsma:imei:35123456-123456-0"[..])
    );
    assert_eq!((c.expires, c.cseq), (Some(600000), Some(2)));
    assert_eq!(&r.registrations[1].aor[..], b"tel:+15551230001");

    let r = ok("ts24229-unregistered.txt");
    let reg = &r.registrations[0];
    assert_eq!(reg.state, RegistrationState::Terminated);
    assert_eq!(reg.contacts[0].event, ContactEvent::Unregistered);
    assert_eq!(reg.active_contacts().count(), 0);
}

#[test]
fn refusals() {
    refused("bad-doctype-xxe.txt", 400, "DOCTYPE");
    refused("bad-unknown-event.txt", 400, "event=\"woke-up\"");
    refused("bad-no-version.txt", 400, "version=");
    refused("bad-contact-without-uri.txt", 400, "<contact> has no <uri>");
    refused("bad-wrong-root.txt", 415, "root element");
}

#[test]
fn every_file_is_documented() {
    let dir = format!("{}/tests/vectors/reginfo", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(format!("{dir}/README.md")).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name != "README.md" {
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} not in README.md"
            );
        }
    }
}
