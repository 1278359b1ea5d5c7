//! A test's own Dovecot (PEERS.md: `dovecot-imapd` 2.3.19): a config written into a fresh
//! directory, IMAP on a free loopback port, plain auth, static passdb (a master user
//! `master`/`mastersecret` and every user with `usersecret`), Maildir per user. Run as root
//! (what `.ci/test.sh` does): the mail directory belongs to `dovecot`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const MASTER: &str = "master";
pub const MASTER_PASSWORD: &str = "mastersecret";

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    conf: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn run(cmd: &mut Command) {
    let st = cmd
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is dovecot-imapd installed?)"));
    assert!(st.success(), "{cmd:?}: {st}");
}

impl Dovecot {
    /// Write the config and start Dovecot; panics (the test fails) when it cannot run.
    pub fn start() -> Dovecot {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        run(Command::new("chmod").arg("755").arg(d));
        for sub in ["run", "mail"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        run(Command::new("chown")
            .arg("dovecot:dovecot")
            .arg(d.join("mail")));
        let port = free_port();
        let conf = d.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                "base_dir = {d}/run\n\
log_path = {d}/dovecot.log\n\
protocols = imap\n\
listen = 127.0.0.1\n\
ssl = no\n\
disable_plaintext_auth = no\n\
auth_mechanisms = plain login\n\
default_internal_user = dovecot\n\
default_login_user = dovenull\n\
first_valid_uid = 1\n\
mail_location = maildir:{d}/mail/%u\n\
auth_master_user_separator = *\n\
passdb {{\n  driver = static\n  args = password={MASTER_PASSWORD}\n  master = yes\n}}\n\
passdb {{\n  driver = static\n  args = password=usersecret\n}}\n\
userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={d}/mail/%u\n}}\n\
service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n",
                d = d.display()
            ),
        )
        .expect("config");
        let dc = Dovecot {
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            conf,
        };
        dc.run();
        dc
    }

    fn run(&self) {
        // The master daemonizes: its output goes to a file, not a pipe we would wait on. A
        // master just stopped may still hold its base_dir for a moment: a few tries.
        let errors = self.dir.path().join("start.err");
        let mut started = false;
        for _ in 0..20 {
            let err = std::fs::File::create(&errors).expect("start.err");
            let st = Command::new("dovecot")
                .arg("-c")
                .arg(&self.conf)
                .stdout(std::process::Stdio::null())
                .stderr(err)
                .status()
                .expect("dovecot runs (is dovecot-imapd installed?)");
            if st.success() {
                started = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(
            started,
            "dovecot does not start: {}\n{}",
            std::fs::read_to_string(&errors).unwrap_or_default(),
            self.log()
        );
        for _ in 0..100 {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dovecot does not listen on {}: {}", self.addr, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("run/master.pid"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Stop it (the mail stays); fails the test if it does not stop.
    pub fn stop(&self) {
        // The master writes its pid file once it runs: wait for it rather than stop nothing.
        for _ in 0..100 {
            if self.pid().is_some_and(|p| !p.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = self.pid().filter(|p| !p.is_empty());
        assert!(pid.is_some(), "dovecot wrote no pid file: {}", self.log());
        if let Some(pid) = pid {
            let _ = Command::new("kill").arg(&pid).status();
            for _ in 0..300 {
                // Gone, or a zombie its (container) parent has not reaped yet.
                let state =
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let gone = state.is_empty() || state.contains(") Z ");
                if gone && std::net::TcpStream::connect(self.addr).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            panic!("dovecot {pid} does not stop: {state}\n{}", self.log());
        }
    }

    /// Start it again on the same port with the same mail.
    pub fn restart(&self) {
        self.run();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg(&pid).status();
        }
    }
}
