//! Every file in tests/vectors/imdn is parsed and gets the outcome its README.md documents.

use bytes::Bytes;
use cpm_iwf::wire::imdn::{
    self, DeliveryStatus, DisplayStatus, Imdn, Notification, ProcessingStatus,
};
use cpm_iwf::wire::{Answer, WireError};

fn load(name: &str) -> Bytes {
    let path = format!("{}/tests/vectors/imdn/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn ok(name: &str) -> Imdn {
    let imdn = imdn::parse(load(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    // Canonical form parses back to the same model.
    assert_eq!(imdn::parse(imdn.to_bytes()).unwrap(), imdn, "{name}");
    imdn
}

fn refused(name: &str, status: u16, text: &str) {
    let err = imdn::parse(load(name)).expect_err(name);
    assert_eq!(err.answer(), Answer::Status(status), "{name}: {err}");
    assert!(err.to_string().contains(text), "{name}: {err}");
    assert!(err.offset().is_some(), "{name}");
}

fn rfc_example(name: &str, notification: Notification) {
    let i = ok(name);
    assert_eq!(&i.message_id[..], b"34jk324j");
    assert_eq!(&i.datetime[..], b"2008-04-04T12:16:49-05:00");
    assert_eq!(i.recipient_uri.as_deref(), Some(&b"im:bob@example.com"[..]));
    assert_eq!(
        i.original_recipient_uri.as_deref(),
        Some(&b"im:bob@example.com"[..])
    );
    assert_eq!(i.subject, None);
    assert_eq!(i.notification, notification);
    assert!(i.extensions.is_empty() && i.status_extensions.is_empty());
}

#[test]
fn rfc5438_examples() {
    rfc_example(
        "rfc5438-7.2.1.1-delivered.txt",
        Notification::Delivery(DeliveryStatus::Delivered),
    );
    rfc_example(
        "rfc5438-7.2.1.2-displayed.txt",
        Notification::Display(DisplayStatus::Displayed),
    );
    rfc_example(
        "rfc5438-8.1-processed.txt",
        Notification::Processing(ProcessingStatus::Processed),
    );
}

#[test]
fn in_the_wild() {
    let i = ok("wild-linphone-reason.txt");
    assert_eq!(
        i.notification,
        Notification::Delivery(DeliveryStatus::Error)
    );
    assert_eq!(
        i.status_extensions,
        vec![Bytes::from_static(
            b"<linphoneimdn:reason xmlns:linphoneimdn=\"http://www.linphone.org/xsds/imdn.xsd\" code=\"415\">Unsupported content</linphoneimdn:reason>"
        )]
    );
    let i = ok("wild-namespace-case.txt");
    assert_eq!(
        i.notification,
        Notification::Display(DisplayStatus::Displayed)
    );
    let i = ok("wild-schema-location.txt");
    assert_eq!(&i.message_id[..], b"Kx81a0Zq");
    let i = ok("wild-bare-minimum.txt");
    assert_eq!(i, Imdn::delivered("m1", "2026-11-25T09:00:00Z", None));
    let i = ok("wild-prefixed-vendor-extension.txt");
    assert_eq!(
        i.notification,
        Notification::Delivery(DeliveryStatus::Failed)
    );
    assert_eq!(i.recipient_uri.as_deref(), Some(&b"tel:+15551234567"[..]));
    assert_eq!(
        i.extensions,
        vec![Bytes::from_static(
            b"<v:trace xmlns:v=\"urn:example:vendor:imdn-ext\" id=\"a1\">relay-3</v:trace>"
        )]
    );
    refused("wild-rcs-no-datetime.txt", 400, "<imdn> has no <datetime>");
}

#[test]
fn refused_vectors() {
    refused("bad-doctype-xxe.txt", 400, "DOCTYPE");
    refused("bad-two-notifications.txt", 400, "two notifications");
    refused(
        "bad-status-of-other-kind.txt",
        400,
        "<displayed> is not a status of <delivery-notification>",
    );
    refused("bad-wrong-root.txt", 415, "expected <imdn>");
    refused("bad-malformed.txt", 400, "malformed XML");
}

#[test]
fn every_vector_is_covered() {
    let dir = format!("{}/tests/vectors/imdn", env!("CARGO_MANIFEST_DIR"));
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
