//! The test SIP user agent (tests/peers/sip_ua.rs) proven against itself on loopback.

#[path = "peers/sip_ua.rs"]
mod sip_ua;

#[tokio::test]
async fn placeholder() {
    let ua = sip_ua::SipUa::bind(sip_ua::Transport::Udp, "a").await.expect("bind");
    assert_ne!(ua.local_addr().port(), 0);
}
