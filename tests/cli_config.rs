//! `cpm-iwf check-config` and `cpm-iwf run --config` on real files, through the binary.

mod common;
use common::cpm_iwf;

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cpm-iwf-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

#[test]
fn the_documented_example_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/cpm-iwf.toml");
    let out = cpm_iwf(&["check-config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cpm-iwf run` serves until SIGTERM, then stops cleanly (exit 0). The configuration asks for
/// ephemeral ports so that the test shares the machine with others.
#[test]
fn run_serves_until_sigterm() {
    use std::io::BufRead;
    let mut text = String::new();
    for side in ["cpm", "simple"] {
        text.push_str(&format!(
            "[{side}]\nsip_udp = [\"127.0.0.1:0\"]\nsip_tcp = [\"127.0.0.1:0\"]\nmsrp_listen = \"127.0.0.1:0\"\n\n"
        ));
    }
    let store = temp_file("store-dir-marker", "")
        .with_file_name("store.redb")
        .display()
        .to_string();
    text.push_str(&format!("[store]\nlocation = \"{store}\"\n"));
    let cfg = temp_file(
        "ephemeral.toml",
        &format!("admin_listen = \"127.0.0.1:0\"\n\n{text}"),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cpm-iwf"))
        .args(["run", "--config", cfg.to_str().expect("utf-8 path")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_default();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("cpm-iwf run did not stop on SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        line.contains(" listening: CPM side SIP udp [127.0.0.1:"),
        "{line}"
    );
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_fault_exits_2_with_one_line_naming_file_line_and_column() {
    let path = temp_file("bad.toml", "[limits]\n\nsip_max_line = 10\n");
    let out = cpm_iwf(&["check-config", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: {}:3:16: 10 is out of range",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_mappings_directory_stops_start_up() {
    let real = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/");
    for name in ["headers.toml", "content.toml"] {
        let text = std::fs::read_to_string(format!("{real}{name}")).expect("mapping file");
        temp_file(name, &text);
    }
    let services = std::fs::read_to_string(format!("{real}services.toml"))
        .expect("services.toml")
        .replace("+g.oma.sip-im.large-message", "g.oma.sip-im.large-message");
    let dir = temp_file("services.toml", &services);
    let dir = dir.parent().expect("parent");
    let cfg = temp_file(
        "with-mappings.toml",
        &format!("mappings = {:?}\n", dir.display()),
    );
    let out = cpm_iwf(&["run", "--config", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("services.toml:") && stderr.contains("large_message: simple_feature_tag"),
        "{stderr}"
    );
}
