//! A chat session through the node, as the integration tests set it up: SDP offers and
//! answers, CPIM bodies, the MSRP exchanges of the two test endpoints, and `set_up`, which
//! leaves a session with both SIP dialogs made and both MSRP connections bound.

#![allow(dead_code)] // each test file uses its own subset

use bytes::Bytes;
use cpm_iwf::wire::msrp::{Message, Method as MsrpMethod, MsrpUri};
use cpm_iwf::wire::sdp::Sdp;
use cpm_iwf::wire::sip::SipMessage;
use rsip::Method;

use super::gateway::Bed;
use super::msrp_endpoint::{self, Reader, Writer};
use super::sip_ua::{self, Transport};

pub const SESSION_ICSI: &str = "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.session";

pub fn offer(path: &MsrpUri, setup: &str) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=message {} TCP/MSRP *\r\na=path:{}\r\na=setup:{setup}\r\n\
a=accept-types:message/cpim application/im-iscomposing+xml\r\n\
a=accept-wrapped-types:text/plain message/imdn+xml\r\n",
        path.port.unwrap_or(9),
        path
    ))
}

/// The first `a=path` URI of a message's SDP.
pub fn sdp_path(msg: &SipMessage) -> MsrpUri {
    let sdp = Sdp::parse(msg.body().clone()).expect("SDP");
    let m = sdp.require_msrp().expect("MSRP stream");
    MsrpUri::parse(m.path.first().cloned().expect("a=path")).expect("MSRP URI")
}

pub fn cpim_text(id: &str, text: &str) -> Bytes {
    Bytes::from(format!(
        "From: <sip:alice@cpm.example.net>\r\nTo: <sip:bob@simple.example.net>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\nDateTime: 2026-11-25T10:00:00.000Z\r\n\
imdn.Disposition-Notification: positive-delivery, display\r\n\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\r\n{text}"
    ))
}

pub fn cpim_notification(id: &str, about: &str, status: &str) -> Bytes {
    let kind = if status == "displayed" {
        "display-notification"
    } else {
        "delivery-notification"
    };
    Bytes::from(format!(
        "From: <sip:bob@simple.example.net>\r\nTo: <sip:alice@cpm.example.net>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\nDateTime: 2026-11-25T10:00:02.000Z\r\n\r\n\
Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\n\r\n\
<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\
<message-id>{about}</message-id><datetime>2026-11-25T10:00:00.000Z</datetime>\
<{kind}><status><{status}/></status></{kind}></imdn>"
    ))
}

pub const IS_COMPOSING: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>active</state>\
<contenttype>text/plain</contenttype><refresh>60</refresh></isComposing>";

pub fn send(w: &mut Writer, id: &str, content_type: &'static str, body: Bytes) -> Message {
    let mut m = w.request(MsrpMethod::Send);
    m.set_header("Message-ID", Bytes::copy_from_slice(id.as_bytes()));
    m.set_header(
        "Byte-Range",
        Bytes::from(format!("1-{}/{}", body.len(), body.len())),
    );
    m.set_body(content_type, body);
    m
}

/// The next request on `r` (the node's answers to our own requests are skipped).
pub async fn next_request(r: &mut Reader) -> Message {
    for _ in 0..8 {
        let m = r.message().await;
        if m.method().is_some() {
            return m;
        }
    }
    panic!("no request from the node");
}

/// The node's 200 to a request of ours.
pub async fn ok(r: &mut Reader) {
    let m = r.message().await;
    assert_eq!(m.response_code(), Some(200), "{m:?}");
}

/// A chat session set up from the CPM side: the SIP dialogs and both MSRP connections bound.
pub struct Chat {
    pub bed: Bed,
    pub cpm_dialog: sip_ua::Dialog,
    /// The SIMPLE caller's dialog, when the SIMPLE side called.
    pub simple_dialog: Option<sip_ua::Dialog>,
    pub alice: (Reader, Writer),
    pub bob: (Reader, Writer),
}

pub async fn set_up(transport: Transport) -> Chat {
    set_up_with(transport, |_| {}, None).await
}

pub async fn set_up_with(
    transport: Transport,
    tweak: impl FnOnce(&mut cpm_iwf::config::Config),
    bob_recv_buffer: Option<u32>,
) -> Chat {
    set_up_keeping_answer(transport, tweak, bob_recv_buffer)
        .await
        .0
}

/// [`set_up_with`], also giving the SIMPLE callee's 2xx as sent (its destination and bytes),
/// for a test to send it again as a retransmission would (RFC 3261 §13.3.1.4).
#[allow(dead_code)] // not every test binary that includes the peers retransmits the 2xx
pub async fn set_up_keeping_answer(
    transport: Transport,
    tweak: impl FnOnce(&mut cpm_iwf::config::Config),
    bob_recv_buffer: Option<u32>,
) -> (Chat, std::net::SocketAddr, Bytes) {
    let mut bed = Bed::start_with(transport, tweak).await;
    let bob_listener = msrp_endpoint::listen(bob_recv_buffer);
    let bob_uri = msrp_endpoint::uri(bob_listener.local_addr().expect("addr").port(), "bobsess7");
    let alice_uri = msrp_endpoint::uri(9, "alicesess3");
    let bob_aor = bed.simple.aor();
    let mut invite = bed
        .cpm
        .new_invite(&bob_aor, offer(&alice_uri, "active"))
        .expect("INVITE");
    invite
        .push_header("P-Preferred-Service", SESSION_ICSI)
        .expect("header");
    invite
        .push_header("Conversation-ID", "conv-chat-1")
        .expect("header");
    invite
        .push_header("Contribution-ID", "contrib-chat-1")
        .expect("header");
    let node_cpm = bed.node_cpm();
    let mut tx = bed.cpm.send_request(node_cpm, invite).await.expect("sent");

    // The SIMPLE callee sees the node's INVITE: the node's MSRP URI, the node connects.
    let inv = bed
        .simple
        .recv_method(Method::Invite, None)
        .await
        .expect("INVITE at SIMPLE");
    let node_simple_uri = sdp_path(&inv.request);
    assert_eq!(
        node_simple_uri.port,
        Some(bed.node.listening.simple_msrp.port())
    );
    assert!(
        inv.request
            .header("Contact")
            .unwrap_or_default()
            .contains("+g.oma.sip-im")
    );
    let sdp_text = String::from_utf8_lossy(inv.request.body()).into_owned();
    assert!(sdp_text.contains("a=setup:active"), "{sdp_text}");
    let answer = offer(&bob_uri, "passive");
    let callee_ok = bed
        .simple
        .response(&inv, 200, "OK", &[], Some(("application/sdp", answer)))
        .expect("200");
    let (simple_side, cpm_side) = tokio::join!(
        bed.simple.send_response_until_ack(&inv, &callee_ok),
        async {
            loop {
                let resp = bed.cpm.next_response(&mut tx, None).await.expect("answer");
                if resp.status_code() == Some(200) {
                    let mut dialog = bed.cpm.dialog_from_response(&tx, &resp).expect("dialog");
                    bed.cpm.ack(&mut dialog).await.expect("ACK");
                    return (resp, dialog);
                }
            }
        }
    );
    simple_side.expect("the node ACKs the callee's 200");
    let (ok200, cpm_dialog) = cpm_side;
    let node_cpm_uri = sdp_path(&ok200);
    assert_eq!(node_cpm_uri.port, Some(bed.node.listening.cpm_msrp.port()));
    assert_eq!(ok200.header("Call-ID"), tx.request.call_id());

    // The node is active towards Bob: it connects and binds with a bodiless SEND.
    let mut bob = msrp_endpoint::accept(&bob_listener, bob_uri, node_simple_uri).await;
    let bind = next_request(&mut bob.0).await;
    let reply = bob.1.respond(&bind, 200);
    bob.1.send(&reply).await.expect("200");
    // Alice is active towards the node.
    let mut alice =
        msrp_endpoint::connect(bed.node.listening.cpm_msrp, alice_uri, node_cpm_uri).await;
    let b = alice.1.bind();
    alice.1.send(&b).await.expect("bind");
    ok(&mut alice.0).await;
    let ok_bytes = callee_ok.serialize();
    (
        Chat {
            bed,
            cpm_dialog,
            simple_dialog: None,
            alice,
            bob,
        },
        inv.source,
        ok_bytes,
    )
}

/// The next response after the node's own 100 Trying (RFC 3261 §17.2.1).
pub async fn past_trying(ua: &mut sip_ua::SipUa, tx: &mut sip_ua::ClientTx) -> SipMessage {
    loop {
        let r = ua.next_response(tx, None).await.expect("a response");
        if r.status_code() != Some(100) {
            return r;
        }
    }
}
