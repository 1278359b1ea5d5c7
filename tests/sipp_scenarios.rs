//! SIPp interop scenarios (tests/sipp/), proven SIPp-to-SIPp on 127.0.0.1: the CPM-side UAC
//! straight to the SIMPLE-side UAS, over UDP and TCP, through `tests/sipp/run.sh` (the one
//! place that knows how to run a pair; `tests/sipp/harness.rs` calls it). The node tests point the same pairs at a running node.
//!
//! `#[ignore]`d because they need SIPp: `apt-get install -y sip-tester`, then
//! `cargo test --test sipp_scenarios -- --ignored` (tests/sipp/README.md). When `sipp` is
//! missing they FAIL, they do not skip.
//!
//! Each run is bounded: SIPp's own `-timeout` with `-timeout_error`, timeout(1) around each
//! SIPp, and a deadline here around the script.

#[path = "peers/sip_ua.rs"]
mod sip_ua;
#[path = "sipp/harness.rs"]
mod sipp_harness;

use std::time::Duration;

use bytes::Bytes;
use cpm_iwf::correlate::{Table, TableLimits};
use cpm_iwf::mapping::Mappings;
use cpm_iwf::time::Millis;
use cpm_iwf::translate::Env;
use cpm_iwf::translate::conversation::IdSource;
use cpm_iwf::translate::session::{Addresses, SideAddresses, invite_request, session_response};
use cpm_iwf::translate::state::Side;
use rsip::Method;
use sip_ua::{SipUa, Transport};
use sipp_harness::{
    HARNESS_DEADLINE, assert_fails, assert_passes, free_port, require_sipp, run_pair, run_script,
};

// --- pager MESSAGE with CPIM + IMDN request -----------------------------------------------------

#[test]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
fn pager_udp_2000_messages() {
    assert_passes(run_pair("pager-udp", "pager", "u1", 2000, 500, &[]));
}

#[test]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
fn pager_tcp_200_messages() {
    assert_passes(run_pair("pager-tcp", "pager", "t1", 200, 100, &[]));
}

/// The strict SIMPLE-side UAS refuses the CPM MESSAGE as SIPp sends it (ICSI, P-Preferred-
/// Service, no +g.oma.sip-im): the checks it makes on the node's output really bite.
#[test]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
fn strict_simple_uas_fails_an_untranslated_cpm_message() {
    let run = run_pair("pager-strict", "pager-simple", "u1", 3, 10, &[]);
    assert_fails(
        run,
        "an untranslated CPM MESSAGE must fail pager_uas_simple.xml",
        "Failed regexp match",
    );
}

// --- INVITE with an MSRP offer, 200 with an answer, ACK, BYE ---------------------------------

#[test]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
fn invite_msrp_udp_5_calls() {
    assert_passes(run_pair("invite-udp", "invite", "u1", 5, 5, &[]));
}

#[test]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
fn invite_msrp_tcp_5_calls() {
    assert_passes(run_pair("invite-tcp", "invite", "t1", 5, 5, &[]));
}

/// The strict SIMPLE-side INVITE UAS refuses the CPM INVITE as SIPp sends it.
#[test]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
fn strict_simple_invite_uas_fails_an_untranslated_cpm_invite() {
    let run = run_pair("invite-strict", "invite-simple", "u1", 2, 5, &[]);
    assert_fails(
        run,
        "an untranslated CPM INVITE must fail invite_msrp_uas_simple.xml",
        "Failed regexp match",
    );
}

/// The UAC fails a call whose 200 carries another a=path than the one expected.
#[test]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
fn invite_uac_fails_on_an_unexpected_answer_path() {
    let run = run_pair(
        "invite-uac-path",
        "invite",
        "u1",
        2,
        5,
        &[("UAC_EXPECT_MSRP", "127.0.0.1:1")],
    );
    assert_fails(
        run,
        "the 200's a=path is not the expected one",
        "expect_msrp:\"127.0.0.1:1\"",
    );
}

/// The UAS fails a call whose INVITE carries another a=path than the one expected.
#[test]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
fn invite_uas_fails_on_an_unexpected_offer_path() {
    let run = run_pair(
        "invite-uas-path",
        "invite",
        "t1",
        2,
        5,
        &[("UAS_EXPECT_MSRP", "127.0.0.1:1")],
    );
    assert_fails(
        run,
        "the INVITE's a=path is not the expected one",
        "expect_msrp:\"127.0.0.1:1\"",
    );
}

// --- the real translator between the SIPp UAC and the SIPp UAS ---------------------------------
//
// A stand-in for the node, built from the test UA (tests/peers/sip_ua.rs) and the translator
// (`translate::pager`, `translate::session`): it shows that the strict SIMPLE-side checks pass
// what the gateway really produces, and that the a=path checks hold for its rewritten SDP.
// The real node replaces this stand-in in the node's own tests.

/// Fresh identities for the translator.
struct Ids(u64);

impl IdSource for Ids {
    fn fresh_id(&mut self) -> Bytes {
        self.0 += 1;
        Bytes::from(format!("mid-{}", self.0))
    }
}

const NOW: Millis = Millis(1_000);
const DATETIME: &str = "2026-11-25T10:00:00.000Z";
/// How long the stand-in waits for SIPp to send the next request.
const PEER_WAIT: Duration = Duration::from_secs(20);

fn ua_transport(transport: &str) -> Transport {
    if transport == "t1" {
        Transport::Tcp
    } else {
        Transport::Udp
    }
}

/// Relay `calls` pager MESSAGEs from the CPM-side UA to the UAS at `uas`, translated.
async fn relay_pagers(cpm: &mut SipUa, simple: &mut SipUa, uas: std::net::SocketAddr, calls: u32) {
    let mappings = Mappings::embedded().expect("embedded mappings");
    let table = Table::new(TableLimits::default());
    let mut ids = Ids(0);
    for _ in 0..calls {
        let tx = cpm
            .recv_method(Method::Message, Some(PEER_WAIT))
            .await
            .expect("a MESSAGE from the SIPp UAC");
        let outcome = {
            let mut env = Env {
                now: NOW,
                ids: &mut ids,
                datetime: DATETIME,
            };
            cpm_iwf::translate::pager::message_request(
                &tx.request,
                Side::Cpm,
                &table.view(NOW),
                &mappings,
                &mut env,
            )
            .expect("the translator takes pager_uac.xml's MESSAGE")
        };
        table.apply(&outcome.changes, NOW).expect("table room");
        let [(Side::Simple, out)] =
            <[_; 1]>::try_from(outcome.send.into_vec()).expect("one message")
        else {
            panic!("the MESSAGE must go to the SIMPLE side");
        };
        let resp = simple
            .request(uas, out)
            .await
            .expect("the SIPp UAS answers");
        let code = resp.status_code().expect("a response");
        cpm.respond(&tx, code, "OK", &[], None)
            .await
            .expect("answer the SIPp UAC");
    }
}

async fn pager_through_translator(transport: &str, calls: u32, rate: u32) {
    require_sipp();
    let mut cpm = SipUa::bind(ua_transport(transport), "iwf")
        .await
        .expect("bind");
    let mut simple = SipUa::bind(ua_transport(transport), "iwf")
        .await
        .expect("bind");
    let uas: std::net::SocketAddr = format!("127.0.0.1:{}", free_port(transport))
        .parse()
        .expect("address");
    let target = cpm.local_addr().to_string();
    let transport_arg = transport.to_owned();
    let runner = tokio::task::spawn_blocking(move || {
        run_script(
            &format!("mid-pager-{transport_arg}"),
            &target,
            &uas.to_string(),
            "pager-simple",
            &transport_arg,
            calls,
            rate,
            &[],
        )
    });
    tokio::time::timeout(
        HARNESS_DEADLINE,
        relay_pagers(&mut cpm, &mut simple, uas, calls),
    )
    .await
    .expect("relay finished in time");
    let run = tokio::time::timeout(HARNESS_DEADLINE, runner)
        .await
        .expect("run.sh finished in time")
        .expect("run.sh thread");
    assert_passes(run);
}

/// pager_uas_simple.xml (strict) passes `translate::pager`'s SIMPLE-side MESSAGE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
async fn strict_simple_uas_passes_the_translated_message_udp() {
    pager_through_translator("u1", 50, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
async fn strict_simple_uas_passes_the_translated_message_tcp() {
    pager_through_translator("t1", 20, 20).await;
}

/// The stand-in's MSRP addresses (text in the SDP only: SIPp does not speak MSRP).
const MID_CPM_MSRP: &str = "127.0.0.1:2855";
const MID_SIMPLE_MSRP: &str = "127.0.0.1:2856";

fn addresses(cpm: &SipUa, simple: &SipUa) -> Addresses {
    let side = |ua: &SipUa, msrp: &str| SideAddresses {
        contact: format!("sip:iwf@{}", ua.local_addr()),
        msrp: msrp.parse().expect("MSRP address"),
        secure: false,
    };
    Addresses {
        cpm: side(cpm, MID_CPM_MSRP),
        simple: side(simple, MID_SIMPLE_MSRP),
    }
}

/// B2BUA `calls` chat INVITEs from the CPM-side UA to the UAS at `uas`, translated: INVITE,
/// 200 (answered by the UAS, ACKed here), 200 to the UAC until its ACK, its BYE relayed.
async fn relay_invites(cpm: &mut SipUa, simple: &mut SipUa, uas: std::net::SocketAddr, calls: u32) {
    let mappings = Mappings::embedded().expect("embedded mappings");
    let table = Table::new(TableLimits::default());
    let mut ids = Ids(0);
    let addrs = addresses(cpm, simple);
    for _ in 0..calls {
        let inv = cpm
            .recv_method(Method::Invite, Some(PEER_WAIT))
            .await
            .expect("an INVITE from the SIPp UAC");
        let mut env = Env {
            now: NOW,
            ids: &mut ids,
            datetime: DATETIME,
        };
        let offer = invite_request(
            &inv.request,
            Side::Cpm,
            &table.view(NOW),
            &mappings,
            &addrs,
            &mut env,
        )
        .expect("the translator takes invite_msrp_uac.xml's INVITE");
        table
            .apply(&offer.outcome.changes, NOW)
            .expect("table room");
        let [(Side::Simple, out)] =
            <[_; 1]>::try_from(offer.outcome.send.into_vec()).expect("one INVITE")
        else {
            panic!("the INVITE must go to the SIMPLE side");
        };
        let (_, far_ok, dialog) = simple.call(uas, out).await.expect("the SIPp UAS answers");
        let mut far_dialog = dialog.expect("a 2xx from the SIPp UAS");
        let answered = session_response(
            &inv.request,
            Side::Cpm,
            &far_ok,
            &table.view(NOW),
            &mappings,
            &addrs,
            &mut env,
        )
        .expect("the translator answers the caller");
        table.apply(&answered.changes, NOW).expect("table room");
        let [(Side::Cpm, ok)] = <[_; 1]>::try_from(answered.send.into_vec()).expect("one answer")
        else {
            panic!("the answer must go to the CPM side");
        };
        cpm.send_response_until_ack(&inv, &ok)
            .await
            .expect("the SIPp UAC ACKs");
        let bye = cpm
            .recv_method(Method::Bye, Some(PEER_WAIT))
            .await
            .expect("a BYE from the SIPp UAC");
        let bye_ok = simple.bye(&mut far_dialog).await.expect("BYE answered");
        assert_eq!(bye_ok.status_code(), Some(200));
        cpm.respond(&bye, 200, "OK", &[], None)
            .await
            .expect("answer the BYE");
    }
}

async fn invite_through_translator(transport: &str, calls: u32) {
    require_sipp();
    let mut cpm = SipUa::bind(ua_transport(transport), "iwf")
        .await
        .expect("bind");
    let mut simple = SipUa::bind(ua_transport(transport), "iwf")
        .await
        .expect("bind");
    let uas: std::net::SocketAddr = format!("127.0.0.1:{}", free_port(transport))
        .parse()
        .expect("address");
    let target = cpm.local_addr().to_string();
    let transport_arg = transport.to_owned();
    let runner = tokio::task::spawn_blocking(move || {
        run_script(
            &format!("mid-invite-{transport_arg}"),
            &target,
            &uas.to_string(),
            "invite-simple",
            &transport_arg,
            calls,
            5,
            // The UAC must see the stand-in's CPM-side MSRP address, the UAS its SIMPLE-side one.
            &[
                ("UAC_EXPECT_MSRP", MID_CPM_MSRP),
                ("UAS_EXPECT_MSRP", MID_SIMPLE_MSRP),
            ],
        )
    });
    tokio::time::timeout(
        HARNESS_DEADLINE,
        relay_invites(&mut cpm, &mut simple, uas, calls),
    )
    .await
    .expect("relay finished in time");
    let run = tokio::time::timeout(HARNESS_DEADLINE, runner)
        .await
        .expect("run.sh finished in time")
        .expect("run.sh thread");
    assert_passes(run);
}

/// Both a=path checks pass `translate::session`'s rewritten SDP, each side seeing the
/// gateway's MSRP address of its own leg, and the strict SIMPLE-side UAS
/// (invite_msrp_uas_simple.xml) passes the translated INVITE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
async fn invite_path_checks_pass_the_translated_sdp_udp() {
    invite_through_translator("u1", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SIPp (apt-get install sip-tester); cargo test --test sipp_scenarios -- --ignored"]
async fn invite_path_checks_pass_the_translated_sdp_tcp() {
    invite_through_translator("t1", 3).await;
}
