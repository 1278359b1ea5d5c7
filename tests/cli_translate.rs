//! `cpm-iwf translate`: a CPM pager MESSAGE, then the SIMPLE IM delivery notification for it,
//! with the table kept in a state file between the two runs.

mod common;
use common::{cpm_iwf, cpm_iwf_stdin, one_error_line};

fn translate(args: &[&str]) -> std::process::Output {
    let mut all = vec!["translate"];
    all.extend_from_slice(args);
    cpm_iwf(&all)
}

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn a_message_then_its_notification_through_a_state_file() {
    let state = std::env::temp_dir().join(format!("cpm-iwf-translate-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&state);
    let state_arg = state.to_str().expect("utf-8");
    let out = translate(&[
        "--from",
        "cpm",
        "--state",
        state_arg,
        &format!("{DIR}/tests/vectors/sip/cpm-pager-message.txt"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("--> Simple\r\n") || stdout.starts_with("--> Simple\n"),
        "{stdout}"
    );
    assert!(stdout.contains(";+g.oma.sip-im"), "{stdout}");
    assert!(!stdout.contains("Conversation-ID"), "{stdout}");
    let saved = std::fs::read_to_string(&state).expect("state saved");
    assert!(saved.contains("Kn31x9Ab7Qz"), "{saved}");

    let out = translate(&[
        "--from",
        "simple",
        "--state",
        state_arg,
        &format!("{DIR}/tests/vectors/translate/simple-imdn-delivered.txt"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--> Cpm"), "{stdout}");
    assert!(
        stdout.contains("Conversation-ID: f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
        "{stdout}"
    );
    assert!(
        stdout.contains("P-Asserted-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(&state);
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let out = cpm_iwf_stdin(
        &["translate", "--from", "simple", "-"],
        b"MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n",
    );
    one_error_line(&out);
}

/// The value of `name` in the first message of a `translate` output.
fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim_end()
}

fn ok_stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_session_invite_answer_and_chunk_through_a_state_file() {
    let dir = std::env::temp_dir().join(format!("cpm-iwf-session-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);
    let state_arg = state.to_str().expect("utf-8");
    let invite = format!("{DIR}/tests/vectors/sip/cpm-chat-invite.txt");

    // 1. The CPM caller's INVITE: the gateway's INVITE on the SIMPLE leg.
    let sent = ok_stdout(&translate(&[
        "--from", "cpm", "--state", state_arg, &invite,
    ]));
    assert!(sent.starts_with("--> Simple"), "{sent}");
    assert!(sent.contains("a=path:msrp://127.0.0.1:2856/"), "{sent}");

    // 2. The callee's 200, given with the request it answers.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx\r\nFrom: {}\r\nTo: {};tag=bob7\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@203.0.113.5:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        header(&sent, "From"),
        header(&sent, "To"),
        header(&sent, "Call-ID"),
        SDP.len(),
        SDP
    );
    let ok_file = dir.join("ok.txt");
    std::fs::write(&ok_file, ok).expect("write");
    let answer = ok_stdout(&translate(&[
        "--from",
        "simple",
        "--state",
        state_arg,
        "--request",
        &invite,
        ok_file.to_str().expect("utf-8"),
    ]));
    assert!(answer.starts_with("--> Cpm\nSIP/2.0 200 OK"), "{answer}");
    assert_eq!(header(&answer, "Call-ID"), "chat-9f8e7d6c5b4a@192.0.2.10");
    let cpm_path = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=path:"))
        .expect("a=path in the answer")
        .trim_end()
        .to_string();
    assert!(cpm_path.starts_with("msrp://127.0.0.1:2855/"), "{cpm_path}");

    // 3. A chunk from the caller to the gateway's CPM-leg URI reaches the callee's path.
    let send = format!(
        "MSRP a786hjs2 SEND\r\nTo-Path: {cpm_path}\r\nFrom-Path: msrp://192.0.2.10:9/s111271x;tcp\r\nMessage-ID: 87652491\r\nByte-Range: 1-6/6\r\nContent-Type: text/plain\r\n\r\nHi Bob\r\n-------a786hjs2$\r\n"
    );
    let relayed = ok_stdout(&cpm_iwf_stdin(
        &["translate", "--from", "cpm", "--state", state_arg, "-"],
        send.as_bytes(),
    ));
    assert!(relayed.starts_with("--> Simple\nMSRP "), "{relayed}");
    assert_eq!(
        header(&relayed, "To-Path"),
        "msrp://203.0.113.5:7394/bobsess;tcp"
    );
    assert!(relayed.contains("\r\nHi Bob\r\n"), "{relayed}");

    // A response without its request is refused with one line.
    let out = translate(&["--from", "simple", ok_file.to_str().expect("utf-8")]);
    one_error_line(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

const SDP: &str = "v=0\r\no=bob 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=message 7394 TCP/MSRP *\r\na=path:msrp://203.0.113.5:7394/bobsess;tcp\r\na=accept-types:message/cpim text/plain\r\n";
