//! The Message Storage Server client: IMAP (RFC 3501 / RFC 9051) over TCP with async-imap on
//! tokio. One connection per job: LOGIN, then CREATE + APPEND (record), or SELECT + UID SEARCH
//! HEADER Message-ID + UID STORE \Deleted + EXPUNGE (delete), then LOGOUT. Every exchange is
//! bounded by the configured timeout; a connection is never kept across jobs, so an MSS restart
//! costs nothing but the jobs in flight, which the durable queue retries.
//!
//! Why async-imap (checked for issue 8): release 0.12.0 (MSRV 1.88), maintained by chatmail
//! (Delta Chat's IMAP stack, e.g. chatmail/async-imap#109, unsolicited APPEND responses, fixed
//! 2024); with `default-features = false, features = ["runtime-tokio"]` it runs on tokio alone
//! (`cargo tree -i async-std` finds nothing); it pulls in imap-proto + nom (the response
//! parser, literals included), futures-util, async-channel, chrono, base64, stop-token. It
//! waits for the `+` continuation before sending an APPEND literal (RFC 9051 §4.3). Its
//! response buffer is not size-bounded: the bound here is time (every exchange under
//! `imap_timeout_ms`) and the peer is the operator's own MSS, not a network user. TLS
//! (`STARTTLS`/993) is not wired yet: plain TCP to an MSS on the operator's network only.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use thiserror::Error;
use tokio::net::TcpStream;

/// Where the MSS is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MssConfig {
    /// IMAP address.
    pub addr: SocketAddr,
    /// Dovecot-style master user: accounts are opened as `<account>*<master_user>`.
    pub master_user: Option<String>,
    /// The master user's (or every account's) password.
    pub password: String,
    /// Bound on each exchange.
    pub timeout: Duration,
}

/// Why an MSS exchange failed.
#[derive(Debug, Error)]
pub enum MssError {
    /// No TCP connection.
    #[error("MSS connect: {0}")]
    Connect(std::io::Error),
    /// The MSS did not answer in time.
    #[error("MSS did not answer in time")]
    Timeout,
    /// LOGIN refused.
    #[error("MSS login refused: {0}")]
    Login(String),
    /// A command refused or the connection lost.
    #[error("MSS: {0}")]
    Imap(String),
}

impl MssError {
    /// The metric label of the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            MssError::Connect(_) => "connect",
            MssError::Timeout => "timeout",
            MssError::Login(_) => "login",
            MssError::Imap(_) => "imap",
        }
    }
}

type Session = async_imap::Session<TcpStream>;

/// The MSS client.
#[derive(Debug, Clone)]
pub struct Mss {
    cfg: MssConfig,
}

fn imap(e: async_imap::error::Error) -> MssError {
    MssError::Imap(e.to_string())
}

impl Mss {
    /// A client for `cfg`.
    pub fn new(cfg: MssConfig) -> Self {
        Mss { cfg }
    }

    async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, MssError>>,
    ) -> Result<T, MssError> {
        tokio::time::timeout(self.cfg.timeout, f)
            .await
            .map_err(|_| MssError::Timeout)?
    }

    async fn open(&self, account: &str) -> Result<Session, MssError> {
        let tcp = self
            .bounded(async {
                TcpStream::connect(self.cfg.addr)
                    .await
                    .map_err(MssError::Connect)
            })
            .await?;
        let mut client = async_imap::Client::new(tcp);
        // The server greeting (RFC 9051 §7.1.1) comes first.
        self.bounded(async {
            match client.read_response().await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(MssError::Imap("closed before its greeting".into())),
                Err(e) => Err(MssError::Imap(e.to_string())),
            }
        })
        .await?;
        let user = match &self.cfg.master_user {
            Some(m) => format!("{account}*{m}"),
            None => account.to_string(),
        };
        self.bounded(async {
            client
                .login(user, &self.cfg.password)
                .await
                .map_err(|(e, _)| MssError::Login(e.to_string()))
        })
        .await
    }

    async fn close(&self, mut s: Session) {
        let _ = tokio::time::timeout(self.cfg.timeout, s.logout()).await;
    }

    /// Record `object` in `folder` of `account`, creating the folder when it is new.
    pub async fn append(&self, account: &str, folder: &str, object: &[u8]) -> Result<(), MssError> {
        let mut s = self.open(account).await?;
        let r = self
            .bounded(async {
                // An existing folder answers NO [ALREADYEXISTS] (RFC 9051 §6.3.4): fine; a
                // folder that really cannot be made fails the APPEND below.
                let _ = s.create(folder).await;
                s.append(folder, Some("(\\Seen)"), None, object)
                    .await
                    .map_err(imap)
            })
            .await;
        self.close(s).await;
        r
    }

    /// UIDs in `folder` of the objects whose RFC 5322 `Message-ID` is `<object_id>`.
    async fn find(
        &self,
        s: &mut Session,
        folder: &str,
        object_id: &str,
    ) -> Result<HashSet<u32>, MssError> {
        s.select(folder).await.map_err(imap)?;
        let id: String = object_id
            .chars()
            .filter(|c| !matches!(c, '"' | '\\' | '\r' | '\n'))
            .collect();
        s.uid_search(format!("HEADER Message-ID \"<{id}>\""))
            .await
            .map_err(imap)
    }

    /// Delete the object `object_id` from `folder` of `account`; whether one was found.
    pub async fn delete(
        &self,
        account: &str,
        folder: &str,
        object_id: &str,
    ) -> Result<bool, MssError> {
        let mut s = self.open(account).await?;
        let r = self
            .bounded(async {
                let uids = match self.find(&mut s, folder, object_id).await {
                    Ok(u) => u,
                    // No folder: nothing was recorded there.
                    Err(MssError::Imap(e))
                        if e.contains("NONEXISTENT") || e.contains("doesn't exist") =>
                    {
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                };
                if uids.is_empty() {
                    return Ok(false);
                }
                let set = uid_set(&uids);
                s.uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                    .await
                    .map_err(imap)?
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(imap)?;
                s.uid_expunge(&set)
                    .await
                    .map_err(imap)?
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(imap)?;
                Ok(true)
            })
            .await;
        self.close(s).await;
        r
    }

    /// Every object of `folder` of `account` matching the IMAP SEARCH `criteria`, whole
    /// (`BODY.PEEK[]`), in UID order: what an operator or a test reads back.
    pub async fn fetch(
        &self,
        account: &str,
        folder: &str,
        criteria: &str,
    ) -> Result<Vec<Vec<u8>>, MssError> {
        let mut s = self.open(account).await?;
        let r = self
            .bounded(async {
                s.select(folder).await.map_err(imap)?;
                let uids = s.uid_search(criteria).await.map_err(imap)?;
                if uids.is_empty() {
                    return Ok(Vec::new());
                }
                let fetched: Vec<_> = s
                    .uid_fetch(uid_set(&uids), "BODY.PEEK[]")
                    .await
                    .map_err(imap)?
                    .try_collect()
                    .await
                    .map_err(imap)?;
                let mut out: Vec<(u32, Vec<u8>)> = fetched
                    .iter()
                    .filter_map(|f| Some((f.uid?, f.body()?.to_vec())))
                    .collect();
                out.sort_by_key(|(u, _)| *u);
                Ok(out.into_iter().map(|(_, b)| b).collect())
            })
            .await;
        self.close(s).await;
        r
    }
}

/// An IMAP sequence set of UIDs (`1,5,9`).
fn uid_set(uids: &HashSet<u32>) -> String {
    let mut v: Vec<u32> = uids.iter().copied().collect();
    v.sort_unstable();
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_sorted_lists() {
        let s: HashSet<u32> = [9, 1, 5].into_iter().collect();
        assert_eq!(uid_set(&s), "1,5,9");
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout_and_no_server_a_connect_failure() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let (s, _) = l.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let mss = Mss::new(MssConfig {
            addr,
            master_user: None,
            password: "x".into(),
            timeout: Duration::from_millis(200),
        });
        let e = mss.append("a", "f", b"x").await.expect_err("no greeting");
        assert_eq!(e.reason(), "timeout");
        held.abort();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let mss = Mss::new(MssConfig {
            addr: gone,
            ..mss.cfg.clone()
        });
        let e = mss.append("a", "f", b"x").await.expect_err("refused");
        assert_eq!(e.reason(), "connect");
    }
}
