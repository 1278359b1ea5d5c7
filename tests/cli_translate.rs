//! `cpm-iwf translate`: a CPM pager MESSAGE, then the SIMPLE IM delivery notification for it,
//! with the table kept in a state file between the two runs.

use std::process::Command;

fn translate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
        .arg("translate")
        .args(args)
        .output()
        .expect("the binary runs")
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
    let out = Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
        .args(["translate", "--from", "simple", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(b"MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")?;
            }
            child.wait_with_output()
        })
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}
