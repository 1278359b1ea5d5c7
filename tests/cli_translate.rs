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
