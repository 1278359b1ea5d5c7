//! A test registrar on loopback UDP that plays the RFC 3680 notifier and a 3GPP S-CSCF's
//! third-party registration, for the availability tests (`tests/registrar_selftest.rs` proves
//! it against `cpm_iwf::node::availability`).
//!
//! Include it with `#[path = "peers/sip_ua.rs"] mod sip_ua;` and
//! `#[path = "peers/registrar.rs"] mod registrar;` (it uses `super::sip_ua`).
//!
//! It runs as a background task owning a [`SipUa`] (UDP), so that a test can drive the node
//! side at the same time:
//! - **SUBSCRIBE `Event: reg`** (RFC 3680 §4, RFC 6665 §4.2): 489 for another package; 423 with
//!   `Min-Expires` below [`RegistrarConfig::min_expires`]; 481 for a refresh of an unknown
//!   dialog; else 200 with `Expires` (at most [`RegistrarConfig::max_expires`]) and a NOTIFY
//!   with full state at once (RFC 3680 §4.4; on every SUBSCRIBE, refreshes included). A
//!   SUBSCRIBE whose Request-URI is [`RegistrarConfig::uri`] watches every AOR (a list);
//!   any other watches its Request-URI's AOR. `Expires: 0` ends the subscription with a final
//!   `terminated` NOTIFY (RFC 6665 §4.2.1.4... "timeout" reason).
//! - On demand: [`Registrar::register`] / [`Registrar::unregister`] change a binding and send
//!   each subscription that covers the AOR a partial-state NOTIFY with the next version;
//!   [`Registrar::skip_version`] loses one version (a gap the subscriber must notice, §5.2);
//!   [`Registrar::terminate`] ends every subscription; [`Registrar::notify_raw`] sends a body
//!   the test chose; [`Registrar::third_party_register`] sends a third-party REGISTER (TS 24.229
//!   §5.4.1.7) to an address.
//! - Every SUBSCRIBE seen is logged ([`Registrar::subscribes`]) with its answer.
//!
//! Bounds: commands go through a bounded channel, each waits for its reply at most
//! [`CMD_WAIT`]; the task polls its UA with a short deadline and stops when the [`Registrar`]
//! is dropped.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cpm_iwf::wire::reginfo::{
    self, Contact, ContactEvent, ContactState, DocState, Reginfo, Registration, RegistrationState,
};
use rsip::Method;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::sip_ua::{Dialog, ServerTx, SipUa, Transport, UaError};

/// The longest a command waits for the registrar task's reply.
pub const CMD_WAIT: Duration = Duration::from_secs(10);

/// How the registrar answers.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Its own URI: a SUBSCRIBE to it watches every AOR.
    pub uri: String,
    /// Answer 423 to a SUBSCRIBE asking for less (RFC 6665 §4.2.1.1).
    pub min_expires: Option<u32>,
    /// Grant at most this many seconds.
    pub max_expires: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            uri: "sip:registrar@ims.example.net".into(),
            min_expires: None,
            max_expires: 3600,
        }
    }
}

/// One SUBSCRIBE the registrar received, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeSeen {
    pub request_uri: String,
    pub call_id: String,
    pub cseq: u32,
    pub expires: u32,
    /// Whether it was a refresh (To tag present).
    pub in_dialog: bool,
    pub status: u16,
}

/// One subscription the registrar serves.
struct Sub {
    dialog: Dialog,
    /// `None`: every AOR (list); else the watched AOR.
    scope: Option<String>,
    /// The version of the next NOTIFY (RFC 3680 §5.1: from 0, one up per NOTIFY).
    version: u64,
    expires: u32,
}

impl Sub {
    fn covers(&self, aor: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == aor)
    }
}

enum Cmd {
    Register(String, String, oneshot::Sender<Vec<u16>>),
    Unregister(String, oneshot::Sender<Vec<u16>>),
    SkipVersion(oneshot::Sender<()>),
    Terminate(String, oneshot::Sender<Vec<u16>>),
    NotifyRaw(String, Bytes, oneshot::Sender<Vec<u16>>),
    ThirdParty(
        SocketAddr,
        String,
        u32,
        oneshot::Sender<Result<u16, String>>,
    ),
}

/// The handle a test holds; dropping it stops the task.
pub struct Registrar {
    addr: SocketAddr,
    cmds: mpsc::Sender<Cmd>,
    log: Arc<Mutex<Vec<SubscribeSeen>>>,
    task: AbortHandle,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Registrar {
    /// A registrar on `127.0.0.1:0` (UDP).
    pub async fn start(cfg: RegistrarConfig) -> Result<Registrar, UaError> {
        let mut ua = SipUa::bind(Transport::Udp, "registrar").await?;
        ua.set_t1(Duration::from_millis(100));
        ua.set_wait(Duration::from_secs(3));
        let addr = ua.local_addr();
        let (tx, rx) = mpsc::channel(16);
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = State {
            ua,
            cfg,
            subs: Vec::new(),
            bindings: BTreeMap::new(),
            next_contact: 0,
            log: log.clone(),
        };
        let task = tokio::spawn(state.run(rx)).abort_handle();
        Ok(Registrar {
            addr,
            cmds: tx,
            log,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every SUBSCRIBE seen so far.
    pub fn subscribes(&self) -> Vec<SubscribeSeen> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        tokio::time::timeout(CMD_WAIT, self.cmds.send(make(tx)))
            .await
            .map_err(err)?
            .map_err(|_| "registrar task gone".to_string())?;
        tokio::time::timeout(CMD_WAIT, rx)
            .await
            .map_err(err)?
            .map_err(|_| "registrar task gone".to_string())
    }

    /// Bind `contact` to `aor` and NOTIFY every subscription covering it (partial state);
    /// returns the final status of each NOTIFY (0 when it got none).
    pub async fn register(&self, aor: &str, contact: &str) -> Result<Vec<u16>, String> {
        let (a, c) = (aor.to_string(), contact.to_string());
        self.ask(|tx| Cmd::Register(a, c, tx)).await
    }

    /// Remove every binding of `aor` and NOTIFY (registration terminated, contacts
    /// `unregistered`).
    pub async fn unregister(&self, aor: &str) -> Result<Vec<u16>, String> {
        let a = aor.to_string();
        self.ask(|tx| Cmd::Unregister(a, tx)).await
    }

    /// Skip one version on every subscription, as if a NOTIFY had been lost.
    pub async fn skip_version(&self) -> Result<(), String> {
        self.ask(Cmd::SkipVersion).await
    }

    /// End every subscription with `Subscription-State: terminated;reason=<reason>`.
    pub async fn terminate(&self, reason: &str) -> Result<Vec<u16>, String> {
        let r = reason.to_string();
        self.ask(|tx| Cmd::Terminate(r, tx)).await
    }

    /// A NOTIFY on every subscription with this Content-Type and body (version untouched).
    pub async fn notify_raw(&self, content_type: &str, body: Bytes) -> Result<Vec<u16>, String> {
        let ct = content_type.to_string();
        self.ask(|tx| Cmd::NotifyRaw(ct, body, tx)).await
    }

    /// Send a third-party REGISTER for `aor` with `Expires: expires` to `dest`; the final
    /// status.
    pub async fn third_party_register(
        &self,
        dest: SocketAddr,
        aor: &str,
        expires: u32,
    ) -> Result<u16, String> {
        let a = aor.to_string();
        self.ask(|tx| Cmd::ThirdParty(dest, a, expires, tx)).await?
    }
}

struct State {
    ua: SipUa,
    cfg: RegistrarConfig,
    subs: Vec<Sub>,
    /// AOR -> (contact id, contact URI).
    bindings: BTreeMap<String, Vec<(u64, String)>>,
    next_contact: u64,
    log: Arc<Mutex<Vec<SubscribeSeen>>>,
}

/// The AOR of a URI as the registrar keys it: no parameters, lower-case host part.
fn key(uri: &str) -> String {
    cpm_iwf::translate::addr::aor(cpm_iwf::translate::addr::uri_of(uri))
}

impl State {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(cmd) => self.command(cmd).await,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            match self.ua.recv_request(Some(Duration::from_millis(20))).await {
                Ok(tx) => self.request(tx).await,
                Err(UaError::Timeout { .. }) => {}
                Err(_) => return,
            }
        }
    }

    async fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Register(aor, contact, reply) => {
                let aor = key(&aor);
                self.next_contact += 1;
                let id = self.next_contact;
                self.bindings
                    .entry(aor.clone())
                    .or_default()
                    .push((id, contact.clone()));
                let mut c = Contact::new(
                    id.to_string(),
                    ContactState::Active,
                    ContactEvent::Registered,
                    contact,
                );
                c.expires = Some(3600);
                let reg = registration(&aor, RegistrationState::Active, vec![c]);
                let statuses = self.notify_partial(&aor, reg).await;
                let _ = reply.send(statuses);
            }
            Cmd::Unregister(aor, reply) => {
                let aor = key(&aor);
                let gone = self.bindings.remove(&aor).unwrap_or_default();
                let contacts = gone
                    .into_iter()
                    .map(|(id, uri)| {
                        let mut c = Contact::new(
                            id.to_string(),
                            ContactState::Terminated,
                            ContactEvent::Unregistered,
                            uri,
                        );
                        c.expires = Some(0);
                        c
                    })
                    .collect();
                let reg = registration(&aor, RegistrationState::Terminated, contacts);
                let statuses = self.notify_partial(&aor, reg).await;
                let _ = reply.send(statuses);
            }
            Cmd::SkipVersion(reply) => {
                for s in &mut self.subs {
                    s.version += 1;
                }
                let _ = reply.send(());
            }
            Cmd::Terminate(reason, reply) => {
                let subs = std::mem::take(&mut self.subs);
                let mut statuses = Vec::new();
                for mut s in subs {
                    let state = format!("terminated;reason={reason}");
                    statuses.push(self.notify(&mut s, &state, None).await);
                }
                let _ = reply.send(statuses);
            }
            Cmd::NotifyRaw(ct, body, reply) => {
                let mut subs = std::mem::take(&mut self.subs);
                let mut statuses = Vec::new();
                for s in &mut subs {
                    let state = format!("active;expires={}", s.expires);
                    statuses.push(self.notify(s, &state, Some((&ct, body.clone()))).await);
                }
                self.subs = subs;
                let _ = reply.send(statuses);
            }
            Cmd::ThirdParty(dest, aor, expires, reply) => {
                let _ = reply.send(self.third_party(dest, &aor, expires).await);
            }
        }
    }

    async fn third_party(
        &mut self,
        dest: SocketAddr,
        aor: &str,
        expires: u32,
    ) -> Result<u16, String> {
        // TS 24.229 §5.4.1.7: Request-URI the AS, From the S-CSCF, To the served user, Contact
        // the S-CSCF, Expires the registration's.
        let mut req = self
            .ua
            .new_request(Method::Register, &format!("sip:as@{dest}"), aor)
            .map_err(err)?;
        let contact = format!("<{}>", self.ua.contact_uri());
        req.push_header("Contact", &contact).map_err(err)?;
        req.push_header("Expires", &expires.to_string())
            .map_err(err)?;
        let resp = self.ua.request(dest, req).await.map_err(err)?;
        resp.status_code().ok_or_else(|| "no status".to_string())
    }

    async fn request(&mut self, tx: ServerTx) {
        match tx.method() {
            Some(Method::Subscribe) => self.subscribe(tx).await,
            _ => {
                let _ = self
                    .ua
                    .respond(
                        &tx,
                        405,
                        "Method Not Allowed",
                        &[("Allow", "SUBSCRIBE")],
                        None,
                    )
                    .await;
            }
        }
    }

    async fn subscribe(&mut self, tx: ServerTx) {
        let req = &tx.request;
        let expires = req
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok())
            .unwrap_or(3600);
        let mut seen = SubscribeSeen {
            request_uri: String::from_utf8_lossy(req.request_uri().unwrap_or_default())
                .into_owned(),
            call_id: req.call_id().unwrap_or_default().to_string(),
            cseq: req.cseq().map_or(0, |c| c.seq),
            expires,
            in_dialog: req.to_tag().is_some(),
            status: 0,
        };
        let status = self.answer_subscribe(&tx, expires).await;
        seen.status = status;
        if let Ok(mut l) = self.log.lock() {
            l.push(seen);
        }
    }

    /// Answer a SUBSCRIBE; returns the status sent.
    async fn answer_subscribe(&mut self, tx: &ServerTx, expires: u32) -> u16 {
        let req = &tx.request;
        let event_ok = req.header("Event").is_some_and(|e| {
            e.split(';').next().unwrap_or_default().trim() == reginfo::EVENT_PACKAGE
        });
        if !event_ok {
            let _ = self
                .ua
                .respond(tx, 489, "Bad Event", &[("Allow-Events", "reg")], None)
                .await;
            return 489;
        }
        if let Some(min) = self.cfg.min_expires
            && expires != 0
            && expires < min
        {
            let v = min.to_string();
            let _ = self
                .ua
                .respond(tx, 423, "Interval Too Brief", &[("Min-Expires", &v)], None)
                .await;
            return 423;
        }
        let granted = expires.min(self.cfg.max_expires);
        let contact = format!("<{}>", self.ua.contact_uri());
        let g = granted.to_string();
        let headers = [("Expires", g.as_str()), ("Contact", contact.as_str())];
        let index = match req.to_tag() {
            Some(tag) => {
                let call_id = req.call_id().unwrap_or_default();
                let Some(i) = self
                    .subs
                    .iter()
                    .position(|s| s.dialog.call_id == call_id && s.dialog.local_tag == tag)
                else {
                    let _ = self
                        .ua
                        .respond(tx, 481, "Subscription Does Not Exist", &[], None)
                        .await;
                    return 481;
                };
                i
            }
            None => {
                let Ok(dialog) = self.ua.dialog_from_request(tx) else {
                    let _ = self.ua.respond(tx, 400, "Bad Request", &[], None).await;
                    return 400;
                };
                let uri =
                    String::from_utf8_lossy(req.request_uri().unwrap_or_default()).into_owned();
                let scope = (key(&uri) != key(&self.cfg.uri)).then(|| key(&uri));
                self.subs.push(Sub {
                    dialog,
                    scope,
                    version: 0,
                    expires: granted,
                });
                self.subs.len() - 1
            }
        };
        let _ = self.ua.respond(tx, 200, "OK", &headers, None).await;
        let mut sub = self.subs.remove(index);
        sub.expires = granted;
        if granted == 0 {
            // RFC 6665 §4.2.1.4: the final NOTIFY of an ended subscription.
            self.notify(&mut sub, "terminated;reason=timeout", None)
                .await;
            return 200;
        }
        // RFC 3680 §4.4: full state after every SUBSCRIBE.
        let doc = self.full_state(&sub);
        let state = format!("active;expires={granted}");
        self.notify_doc(&mut sub, &state, doc).await;
        self.subs.insert(index, sub);
        200
    }

    fn full_state(&self, sub: &Sub) -> Vec<Registration> {
        let aors: Vec<String> = match &sub.scope {
            Some(a) => vec![a.clone()],
            None => self.bindings.keys().cloned().collect(),
        };
        aors.into_iter()
            .map(|aor| {
                let contacts: Vec<Contact> = self
                    .bindings
                    .get(&aor)
                    .map(|b| {
                        b.iter()
                            .map(|(id, uri)| {
                                Contact::new(
                                    id.to_string(),
                                    ContactState::Active,
                                    ContactEvent::Registered,
                                    uri.clone(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let state = if contacts.is_empty() {
                    RegistrationState::Init
                } else {
                    RegistrationState::Active
                };
                registration(&aor, state, contacts)
            })
            .collect()
    }

    async fn notify_partial(&mut self, aor: &str, reg: Registration) -> Vec<u16> {
        let mut subs = std::mem::take(&mut self.subs);
        let mut statuses = Vec::new();
        for s in subs.iter_mut().filter(|s| s.covers(aor)) {
            let state = format!("active;expires={}", s.expires);
            let doc = Reginfo {
                version: s.version,
                state: DocState::Partial,
                registrations: vec![reg.clone()],
            };
            s.version += 1;
            statuses.push(
                self.notify(s, &state, Some((reginfo::CONTENT_TYPE, doc.to_bytes())))
                    .await,
            );
        }
        self.subs = subs;
        statuses
    }

    async fn notify_doc(&mut self, sub: &mut Sub, state: &str, regs: Vec<Registration>) -> u16 {
        let doc = Reginfo {
            version: sub.version,
            state: DocState::Full,
            registrations: regs,
        };
        sub.version += 1;
        self.notify(sub, state, Some((reginfo::CONTENT_TYPE, doc.to_bytes())))
            .await
    }

    /// One NOTIFY in `sub`'s dialog; its final status (0 when none came).
    async fn notify(&mut self, sub: &mut Sub, state: &str, body: Option<(&str, Bytes)>) -> u16 {
        let Ok(mut req) = self.ua.dialog_request(&mut sub.dialog, Method::Notify) else {
            return 0;
        };
        let contact = format!("<{}>", self.ua.contact_uri());
        let ok = req.push_header("Contact", &contact).is_ok()
            && req.push_header("Event", reginfo::EVENT_PACKAGE).is_ok()
            && req.push_header("Subscription-State", state).is_ok();
        if !ok {
            return 0;
        }
        if let Some((ct, b)) = body
            && req.set_body_with_type(Some(ct), b).is_err()
        {
            return 0;
        }
        let peer = sub.dialog.peer;
        match self.ua.request(peer, req).await {
            Ok(resp) => resp.status_code().unwrap_or(0),
            Err(_) => 0,
        }
    }
}

fn registration(aor: &str, state: RegistrationState, contacts: Vec<Contact>) -> Registration {
    Registration {
        aor: Bytes::from(aor.to_string()),
        id: Bytes::from(format!("reg-{aor}")),
        state,
        contacts,
    }
}
