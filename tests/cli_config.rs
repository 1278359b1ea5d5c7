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
    let out = cpm_iwf(&["run", "--config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
