//! A `redis-server` a test starts for itself on a free loopback port with its own directory
//! (AOF on), killed (SIGKILL) when dropped. The tests using it are `#[ignore]`d and fail, not
//! skip, when redis-server is missing (`.ci/test.sh` installs it).
#![allow(dead_code)] // each test file uses its own subset

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server of this test; killed (SIGKILL) when dropped.
pub struct RedisServer {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

fn pong(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start(dir: &Path, fsync: &str) -> RedisServer {
        Self::start_on(dir, fsync, free_port())
    }

    pub fn start_on(dir: &Path, fsync: &str, port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                fsync,
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed for these tests (apt-get install -y redis-server)",
            );
        let server = RedisServer {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        // Ready when it answers PING with PONG (not -LOADING while it reads its AOF).
        let start = Instant::now();
        while !pong(port) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, then start again on the same port and directory (it loads its AOF).
    pub fn crash_and_restart(mut self) -> RedisServer {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (dir, port) = (self.dir.clone(), self.port);
        drop(self);
        RedisServer::start_on(&dir, "always", port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
