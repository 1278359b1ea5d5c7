//! The recorder (issue 8): the tokio side of `crate::record`. The core calls it at four
//! points, each a few lines in `b2bua.rs`:
//!
//! * [`Recorder::request`] on every translated request: a standalone MESSAGE whose users want
//!   recording (both the originating and the terminating user's preferences apply, SD
//!   5.2.1.2.1) becomes one object per user, queued for upload; the core delivers the message
//!   only when the uploads are confirmed or `upload_wait_ms` passed (the future it returns).
//!   An initial INVITE is remembered for its session's information.
//! * [`Recorder::delivery_result`] on the final answer to a MESSAGE: a failure deletes what was
//!   recorded (SD 5.2.1.2.1).
//! * [`Recorder::session_opened`] when the MSRP relay opens a session: a [`SessionRecord`] the
//!   chunk translator feeds with every message, reassembled; [`Recorder::session_ended`] on
//!   BYE or MSRP end queues the session's one object (SD 5.2.1.2.3).
//!
//! `upload_workers` tasks share the durable queue and the MSS client; an account's jobs always
//! go to the same worker (a stable hash of the account), which does them one at a time in the
//! order queued, so a deletion always follows the upload it undoes. Failed jobs are retried
//! with exponential backoff from the durable queue, which also survives a restart. Nothing here
//! ever blocks the core: every hand-over is a `try_send` on a bounded channel, and a full
//! channel is counted as a failure (`queue_full`) and logged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::RecordConfig;
use crate::mapping::Service;
use crate::metrics;
use crate::record::mss::{Mss, MssConfig};
use crate::record::object::{self, Entry, Ids, SessionInfo, Standalone};
use crate::record::prefs::{Direction, Kind, Preferences, Subject, media_type};
use crate::record::queue::{Job, Queue, QueueError};
use crate::record::reassembly::Reassembly;
use crate::translate::Outcome;
use crate::translate::state::{DialogKey, Side, View};
use crate::wire::cpim::Cpim;
use crate::wire::msrp::{Message, Method as MsrpMethod};
use crate::wire::sip::SipMessage;

/// A wait the core puts before delivering a recorded message.
pub type UploadWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Most standalone messages waiting for their delivery result, and most INVITEs remembered.
const MAX_PENDING: usize = 65_536;
/// An INVITE not followed by a session within this is forgotten.
const INVITE_TTL: Duration = Duration::from_secs(300);
/// Most MSRP messages of one session being reassembled at once.
const MAX_PARTIAL: usize = 16;

enum Work {
    /// Queue and attempt a job; `done` hears whether the first attempt succeeded.
    Push {
        job: Job,
        done: Option<oneshot::Sender<bool>>,
    },
    /// The delivery of the recorded object failed: remove it (from the queue if it was not
    /// uploaded yet, else from the MSS).
    Undo {
        account: String,
        folder: String,
        object_id: String,
    },
}

struct Recorded {
    account: String,
    folder: String,
    object_id: String,
}

struct Invite {
    /// The Call-IDs it is remembered under (both legs').
    keys: Vec<String>,
    at: Instant,
    established: SystemTime,
    from_side: Side,
    from: String,
    to: String,
    ids: Ids,
}

/// The recorder shared by the core and the chunk translators.
pub struct Recorder {
    prefs: RwLock<Arc<Preferences>>,
    prefs_path: Option<PathBuf>,
    /// One queue per upload worker; an account's jobs always go to the same one.
    work: Vec<mpsc::Sender<Work>>,
    wait: Duration,
    max_object: usize,
    pagers: Mutex<HashMap<String, Vec<Recorded>>>,
    invites: Mutex<HashMap<String, Arc<Invite>>>,
    sessions: Mutex<HashMap<u64, Arc<SessionRecord>>>,
    epoch: u64,
    seq: AtomicU64,
}

fn header(m: &SipMessage, name: &str) -> Option<String> {
    m.header(name).map(str::to_string)
}

fn ids_of(m: &SipMessage) -> Ids {
    Ids {
        conversation_id: header(m, "Conversation-ID"),
        contribution_id: header(m, "Contribution-ID"),
        in_reply_to: header(m, "InReplyTo-Contribution-ID"),
    }
}

/// The request as the CPM side sees it: the received one from CPM, else the translated one
/// sent to CPM (the node generated its CPM identities, SD 5.2.1.1).
fn cpm_form<'a>(from: Side, msg: &'a SipMessage, outcome: &'a Outcome) -> Option<&'a SipMessage> {
    if from == Side::Cpm {
        return Some(msg);
    }
    outcome
        .send
        .iter()
        .find(|(to, m)| *to == Side::Cpm && m.is_request() && m.method() == msg.method())
        .map(|(_, m)| m)
}

fn pager_key(m: &SipMessage) -> String {
    format!(
        "{}|{}|{}",
        m.call_id().unwrap_or_default(),
        m.cseq().map_or(0, |c| c.seq),
        m.from_tag().unwrap_or_default()
    )
}

/// Inner content type and imdn Message-ID of a body, when it is CPIM.
fn cpim_facts(content_type: &str, body: &Bytes) -> (Option<String>, Option<String>) {
    if media_type(content_type) != "message/cpim" {
        return (None, None);
    }
    match Cpim::summarize(body.clone()) {
        Ok(s) => (
            s.content_type
                .map(|c| String::from_utf8_lossy(&c).into_owned()),
            s.imdn_message_id
                .map(|c| String::from_utf8_lossy(&c).into_owned()),
        ),
        Err(_) => (None, None),
    }
}

fn is_not_a_message(inner: &str) -> bool {
    let t = media_type(inner);
    t == "application/im-iscomposing+xml"
}

impl Recorder {
    /// Open the queue, load the preferences, start the uploader and the SIGHUP reloader.
    pub fn start(cfg: &RecordConfig) -> Result<(Arc<Recorder>, Vec<JoinHandle<()>>), String> {
        let prefs = match &cfg.preferences {
            Some(p) => Preferences::load(p).map_err(|e| e.to_string())?,
            None => Preferences::default(),
        };
        let queue =
            Arc::new(Queue::open(&cfg.queue_path, cfg.queue_capacity).map_err(|e| e.to_string())?);
        let mss = Mss::new(MssConfig {
            addr: cfg.imap,
            master_user: cfg.master_user.clone(),
            password: cfg.password.clone(),
            timeout: Duration::from_millis(cfg.imap_timeout_ms),
        });
        let lanes = cfg.upload_workers.max(1);
        let (work, rxs): (Vec<_>, Vec<_>) = (0..lanes)
            .map(|_| mpsc::channel::<Work>((1024 / lanes).max(64)))
            .unzip();
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let recorder = Arc::new(Recorder {
            prefs: RwLock::new(Arc::new(prefs)),
            prefs_path: cfg.preferences.clone(),
            work,
            wait: Duration::from_millis(cfg.upload_wait_ms),
            max_object: cfg.max_object_bytes,
            pagers: Mutex::new(HashMap::new()),
            invites: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            epoch,
            seq: AtomicU64::new(0),
        });
        let backoff = Backoff {
            base: Duration::from_millis(cfg.retry_base_ms),
            max: Duration::from_millis(cfg.retry_max_ms.max(cfg.retry_base_ms)),
        };
        let mut tasks: Vec<JoinHandle<()>> = rxs
            .into_iter()
            .enumerate()
            .map(|(lane, rx)| {
                let up = Uploader {
                    queue: queue.clone(),
                    mss: mss.clone(),
                    backoff,
                    lane,
                    lanes,
                };
                tokio::spawn(up.run(rx))
            })
            .collect();
        #[cfg(unix)]
        {
            let r = recorder.clone();
            if let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tasks.push(tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        match r.reload() {
                            Ok(()) => tracing::info!("recording preferences reloaded"),
                            Err(e) => {
                                tracing::error!(error = %e, "recording preferences not reloaded")
                            }
                        }
                    }
                }));
            }
        }
        Ok((recorder, tasks))
    }

    /// Read the preferences file again (SIGHUP); on a fault the old preferences stay.
    pub fn reload(&self) -> Result<(), crate::tomlfile::FileError> {
        let Some(path) = &self.prefs_path else {
            return Ok(());
        };
        let p = Preferences::load(path)?;
        *self.prefs.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
        Ok(())
    }

    fn prefs(&self) -> Arc<Preferences> {
        self.prefs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn object_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{:x}.{n}@cpm-iwf", self.epoch)
    }

    fn lane(&self, account: &str) -> Option<&mpsc::Sender<Work>> {
        self.work.get(lane_of(account, self.work.len()))
    }

    fn push(&self, job: Job, done: Option<oneshot::Sender<bool>>) -> bool {
        let Some(lane) = self.lane(job.account()) else {
            return false;
        };
        if lane.try_send(Work::Push { job, done }).is_err() {
            metrics::record_failure("queue_full");
            tracing::warn!("recording queue full: object not recorded");
            return false;
        }
        true
    }

    /// A translated request (`msg` received from `from`, `outcome` what it became). For a
    /// standalone message to record: the wait before it is delivered.
    pub fn request(&self, from: Side, msg: &SipMessage, outcome: &Outcome) -> Option<UploadWait> {
        match msg.method() {
            Some(rsip::Method::Message) => self.pager(from, msg, outcome),
            Some(rsip::Method::Invite) if msg.to_tag().is_none() => {
                self.invite(from, msg, outcome);
                None
            }
            _ => None,
        }
    }

    fn pager(&self, from: Side, msg: &SipMessage, outcome: &Outcome) -> Option<UploadWait> {
        let cpm = cpm_form(from, msg, outcome)?;
        let ct = cpm.content_type().unwrap_or("text/plain").to_string();
        let body = cpm.body().clone();
        let (inner, imdn_id) = cpim_facts(&ct, &body);
        let shown = inner.clone().unwrap_or_else(|| ct.clone());
        // Notifications and isComposing are not standalone messages (SD 5.2.1.2.1).
        let t = media_type(&shown);
        if t == "message/imdn+xml" || is_not_a_message(&t) {
            return None;
        }
        let (from_h, to_h) = (header(cpm, "From")?, header(cpm, "To")?);
        let prefs = self.prefs();
        let ids = ids_of(cpm);
        let folder = object::folder(ids.conversation_id.as_deref());
        let now = SystemTime::now();
        let mut waits = Vec::new();
        let mut recorded = Vec::new();
        for (user, peer, direction) in [
            (&from_h, &to_h, Direction::Outgoing),
            (&to_h, &from_h, Direction::Incoming),
        ] {
            let Some(account) = prefs.decide(&Subject {
                user,
                peer,
                kind: Kind::Standalone,
                direction,
                content_type: Some(&shown),
            }) else {
                continue;
            };
            let object_id = self.object_id();
            let obj = object::standalone(&Standalone {
                object_id: &object_id,
                from: &from_h,
                to: &to_h,
                date: now,
                ids: &ids,
                imdn_message_id: imdn_id.as_deref(),
                direction,
                content_type: &ct,
                body: &body,
            });
            if obj.len() > self.max_object {
                metrics::record_failure("too_large");
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let job = Job::Append {
                account: account.clone(),
                folder: folder.clone(),
                object_id: object_id.clone(),
                object: Bytes::from(obj),
            };
            if self.push(job, Some(tx)) {
                waits.push(rx);
                recorded.push(Recorded {
                    account,
                    folder: folder.clone(),
                    object_id,
                });
            }
        }
        if recorded.is_empty() {
            return None;
        }
        {
            let mut p = self.pagers.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() < MAX_PENDING {
                p.insert(pager_key(msg), recorded);
            } else {
                tracing::warn!(
                    "too many recorded messages awaiting delivery: no deletion on failure"
                );
            }
        }
        let wait = self.wait;
        Some(Box::pin(async move {
            // SD 5.2.1.2.1: upload first, deliver after; bounded so that an MSS down never
            // holds the message (the durable queue retries the upload).
            let _ = tokio::time::timeout(wait, async {
                for rx in waits {
                    let _ = rx.await;
                }
            })
            .await;
        }))
    }

    /// The final answer `status` to the MESSAGE `received`: a failure undoes its records.
    pub fn delivery_result(&self, received: &SipMessage, status: u16) {
        if status < 200 || received.method() != Some(&rsip::Method::Message) {
            return;
        }
        let recorded = self
            .pagers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pager_key(received));
        let Some(recorded) = recorded else { return };
        if status < 300 {
            return;
        }
        for r in recorded {
            let Some(lane) = self.lane(&r.account) else {
                continue;
            };
            let undo = Work::Undo {
                account: r.account,
                folder: r.folder,
                object_id: r.object_id,
            };
            if lane.try_send(undo).is_err() {
                metrics::record_failure("queue_full");
                tracing::warn!("recording queue full: a failed message stays recorded");
            }
        }
    }

    fn invite(&self, from: Side, msg: &SipMessage, outcome: &Outcome) {
        let Some(cpm) = cpm_form(from, msg, outcome) else {
            return;
        };
        let (Some(f), Some(t)) = (header(cpm, "From"), header(cpm, "To")) else {
            return;
        };
        // Only sessions of a CPM user who records something are worth remembering.
        let user = if from == Side::Cpm { &f } else { &t };
        let p = self.prefs();
        let u = p.of(user);
        if !(u.session || u.file_transfer || u.standalone) {
            return;
        }
        let keys: Vec<String> = [
            Some(msg),
            outcome
                .send
                .iter()
                .find(|(_, m)| m.is_request())
                .map(|(_, m)| m),
        ]
        .into_iter()
        .flatten()
        .filter_map(|m| m.call_id().map(str::to_string))
        .collect();
        let inv = Arc::new(Invite {
            keys: keys.clone(),
            at: Instant::now(),
            established: SystemTime::now(),
            from_side: from,
            from: f,
            to: t,
            ids: ids_of(cpm),
        });
        let mut map = self.invites.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_PENDING {
            map.retain(|_, i| i.at.elapsed() < INVITE_TTL);
            if map.len() >= MAX_PENDING {
                return;
            }
        }
        // Both legs' Call-IDs name it: the MSRP table entries carry their own leg's.
        for k in keys {
            map.insert(k, inv.clone());
        }
    }

    /// The relay opened session `id` over the legs `sids`: its record, when its CPM user wants
    /// chat sessions recorded.
    pub fn session_opened(
        &self,
        id: u64,
        sids: [&Bytes; 2],
        view: &impl View,
    ) -> Option<Arc<SessionRecord>> {
        let peers: Vec<_> = sids.iter().filter_map(|s| view.msrp(s)).collect();
        let call_ids: Vec<Bytes> = peers.iter().map(|p| p.call_id.clone()).collect();
        // What the session carries decides which switch applies (SD 5.2.1.2.1-3): a large
        // message is a standalone message, reassembled into one object.
        let service = peers.iter().find_map(|p| {
            view.dialog(&DialogKey {
                side: p.side,
                call_id: p.call_id.clone(),
            })
            .map(|d| d.service)
        });
        let kind = match service {
            Some(Service::LargeMessage) => Kind::Standalone,
            Some(Service::FileTransfer) => Kind::FileTransfer,
            _ => Kind::Session,
        };
        let inv = {
            let mut map = self.invites.lock().unwrap_or_else(|e| e.into_inner());
            let found = call_ids
                .iter()
                .find_map(|c| map.get(String::from_utf8_lossy(c).as_ref()).cloned());
            for c in &call_ids {
                map.remove(String::from_utf8_lossy(c).as_ref());
            }
            if let Some(i) = &found {
                for k in &i.keys {
                    map.remove(k);
                }
            }
            found
        }?;
        // The CPM user: the inviting one when the INVITE came from CPM, else the invited.
        let (user, peer, direction) = match inv.from_side {
            Side::Cpm => (&inv.from, &inv.to, Direction::Outgoing),
            Side::Simple => (&inv.to, &inv.from, Direction::Incoming),
        };
        let prefs = self.prefs();
        let account = prefs.decide(&Subject {
            user,
            peer,
            kind,
            direction,
            content_type: None,
        })?;
        let rec = Arc::new(SessionRecord {
            kind,
            content_types: prefs
                .of(user)
                .content_types
                .iter()
                .map(|c| media_type(c))
                .collect(),
            info: SessionInfo {
                object_id: self.object_id(),
                established: inv.established,
                inviting: inv.from.clone(),
                invited: vec![inv.to.clone()],
                ids: inv.ids.clone(),
            },
            account,
            max_bytes: self.max_object,
            bytes: AtomicUsize::new(0),
            state: Mutex::new(SessionState {
                entries: Vec::new(),
                reassembly: Reassembly::new(self.max_object, MAX_PARTIAL),
                cut: false,
            }),
        });
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= MAX_PENDING {
            return None;
        }
        s.insert(id, rec.clone());
        Some(rec)
    }

    /// Session `id` ended (BYE, MSRP end): its history goes to the MSS.
    pub fn session_ended(&self, id: u64) {
        let rec = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let Some(rec) = rec else { return };
        let entries =
            std::mem::take(&mut rec.state.lock().unwrap_or_else(|e| e.into_inner()).entries);
        let folder = object::folder(rec.info.ids.conversation_id.as_deref());
        if rec.kind == Kind::Standalone {
            // A large message (MSRP): each whole message its own standalone object.
            for e in entries {
                let object_id = self.object_id();
                let obj = object::standalone(&Standalone {
                    object_id: &object_id,
                    from: &rec.info.inviting,
                    to: rec.info.invited.first().map_or("", String::as_str),
                    date: e.date,
                    ids: &rec.info.ids,
                    imdn_message_id: e.imdn_message_id.as_deref(),
                    direction: e.direction,
                    content_type: &e.content_type,
                    body: &e.body,
                });
                self.push(
                    Job::Append {
                        account: rec.account.clone(),
                        folder: folder.clone(),
                        object_id,
                        object: Bytes::from(obj),
                    },
                    None,
                );
            }
            return;
        }
        let obj = object::session_history(&rec.info, &entries);
        self.push(
            Job::Append {
                account: rec.account.clone(),
                folder,
                object_id: rec.info.object_id.clone(),
                object: Bytes::from(obj),
            },
            None,
        );
    }
}

struct SessionState {
    entries: Vec<Entry>,
    reassembly: Reassembly,
    cut: bool,
}

/// One chat session being recorded: the chunk translator hands it every SEND.
pub struct SessionRecord {
    kind: Kind,
    /// The user's content type filter (empty: all); notifications always pass.
    content_types: Vec<String>,
    info: SessionInfo,
    account: String,
    max_bytes: usize,
    bytes: AtomicUsize,
    state: Mutex<SessionState>,
}

impl SessionRecord {
    /// A SEND chunk relayed from `from`, in its CPM form.
    pub fn chunk(&self, from: Side, msg: &Message) {
        if msg.method() != Some(&MsrpMethod::Send) {
            return;
        }
        let (Some(id), Some(body)) = (msg.message_id(), msg.body.as_ref()) else {
            return;
        };
        let range = msg.byte_range().ok().flatten();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let whole = match st
            .reassembly
            .chunk(id, range, msg.content_type(), body, msg.continuation)
        {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(e) => {
                tracing::info!(error = %e, "an MSRP message is not recorded");
                metrics::record_failure("reassembly");
                return;
            }
        };
        let ct = whole.content_type.as_ref().map_or_else(
            || "text/plain".to_string(),
            |c| String::from_utf8_lossy(c).into_owned(),
        );
        let (inner, imdn_id) = cpim_facts(&ct, &whole.body);
        let shown = media_type(inner.as_deref().unwrap_or(&ct));
        if is_not_a_message(&shown) {
            return;
        }
        if !self.content_types.is_empty()
            && shown != "message/imdn+xml"
            && !self.content_types.contains(&shown)
        {
            return;
        }
        let total = self.bytes.fetch_add(whole.body.len(), Ordering::Relaxed) + whole.body.len();
        if total > self.max_bytes {
            if !st.cut {
                st.cut = true;
                metrics::record_failure("too_large");
                tracing::warn!(
                    "session history larger than max_object_bytes: later messages not recorded"
                );
            }
            return;
        }
        st.entries.push(Entry {
            date: SystemTime::now(),
            direction: match from {
                Side::Cpm => Direction::Outgoing,
                Side::Simple => Direction::Incoming,
            },
            imdn_message_id: imdn_id,
            content_type: ct,
            body: whole.body,
        });
    }
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// The delay after `attempts` failed attempts: base, 2×base, 4×base, ... up to max.
    fn after(&self, attempts: u32) -> Duration {
        let f = 1u32 << attempts.saturating_sub(1).min(20);
        self.base.saturating_mul(f).min(self.max)
    }
}

fn kind_of(job: &Job) -> &'static str {
    match job {
        Job::Append { object, .. }
            if memchr::memmem::find(
                object.get(..4096.min(object.len())).unwrap_or_default(),
                b"Application/X-CPM-Session",
            )
            .is_some() =>
        {
            "session"
        }
        _ => "standalone",
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, QueueError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(QueueError::Redb(::redb::Error::Corrupted(e.to_string()))),
    }
}

/// One attempt at a queued job; on success it leaves the queue.
async fn attempt(queue: &Arc<Queue>, mss: &Mss, id: u64, job: &Job) -> bool {
    let result = match job {
        Job::Append {
            account,
            folder,
            object,
            ..
        } => mss.append(account, folder, object).await.map(|()| true),
        Job::Delete {
            account,
            folder,
            object_id,
        } => mss.delete(account, folder, object_id).await,
    };
    match result {
        Ok(found) => {
            match job {
                Job::Append { object, .. } => {
                    metrics::record_object(kind_of(job), object.len() as u64)
                }
                Job::Delete { .. } => {
                    if found {
                        metrics::record_deletion();
                    }
                }
            }
            let q = queue.clone();
            if let Err(e) = blocking(move || q.remove(id)).await {
                tracing::error!(error = %e, "recorded job not removed from the queue");
            }
            true
        }
        Err(e) => {
            metrics::record_failure(e.reason());
            tracing::warn!(error = %e, object = job.object_id(), "recording attempt failed; retried later");
            false
        }
    }
}

/// The upload worker of an account (FNV-1a of its name, stable across restarts so that a
/// restarted node gives each queued job to the worker of its account again).
fn lane_of(account: &str, lanes: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % lanes.max(1) as u64) as usize
}

/// One upload worker: the jobs of its accounts, one at a time, in queue order.
struct Uploader {
    queue: Arc<Queue>,
    mss: Mss,
    backoff: Backoff,
    lane: usize,
    lanes: usize,
}

impl Uploader {
    async fn run(self, rx: mpsc::Receiver<Work>) {
        uploader(
            self.queue,
            self.mss,
            rx,
            self.backoff,
            self.lane,
            self.lanes,
        )
        .await;
    }
}

async fn uploader(
    queue: Arc<Queue>,
    mss: Mss,
    mut rx: mpsc::Receiver<Work>,
    backoff: Backoff,
    lane: usize,
    lanes: usize,
) {
    // Jobs waiting for a retry: when, and how many attempts failed.
    let mut due: HashMap<u64, (tokio::time::Instant, u32)> = HashMap::new();
    // Uploads not yet confirmed, by object: a failed delivery then removes the upload instead
    // of deleting from the MSS.
    let mut appends: HashMap<String, u64> = HashMap::new();
    // After a restart everything queued is due at once.
    {
        let q = queue.clone();
        if let Ok(list) = blocking(move || q.index(usize::MAX)).await {
            for (id, peeked) in list {
                // This worker's accounts; an undecodable job is worker 0's (to remove it).
                let mine = match &peeked {
                    Some((account, _)) => lane_of(account, lanes) == lane,
                    None => lane == 0,
                };
                if !mine {
                    continue;
                }
                if let Some((_, Some(object_id))) = peeked {
                    appends.insert(object_id, id);
                }
                due.insert(id, (tokio::time::Instant::now(), 0));
            }
        }
    }
    let depth = |queue: &Arc<Queue>| {
        if let Ok(n) = queue.len() {
            metrics::record_queue_depth(n);
        }
    };
    depth(&queue);
    loop {
        let next = due.values().map(|(at, _)| *at).min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            work = rx.recv() => {
                let Some(work) = work else { return };
                match work {
                    Work::Push { job, done } => {
                        let q = queue.clone();
                        let j = job.clone();
                        match blocking(move || q.push(&j)).await {
                            Ok(id) => {
                                let ok = attempt(&queue, &mss, id, &job).await;
                                if !ok {
                                    if let Job::Append { object_id, .. } = &job {
                                        appends.insert(object_id.clone(), id);
                                    }
                                    due.insert(id, (tokio::time::Instant::now() + backoff.after(1), 1));
                                }
                                // The gauge is right before the waiting message goes on.
                                depth(&queue);
                                if let Some(d) = done {
                                    let _ = d.send(ok);
                                }
                            }
                            Err(e) => {
                                metrics::record_failure(match e {
                                    QueueError::Full(_) => "queue_full",
                                    QueueError::Redb(_) => "queue_error",
                                });
                                tracing::error!(error = %e, "recording job not queued");
                            }
                        }
                    }
                    Work::Undo { account, folder, object_id } => {
                        // Not uploaded yet: it never reaches the MSS.
                        let queued = match appends.remove(&object_id) {
                            Some(id) => {
                                let q = queue.clone();
                                matches!(blocking(move || q.remove(id)).await, Ok(true)).then_some(id)
                            }
                            None => None,
                        };
                        if let Some(id) = queued {
                            due.remove(&id);
                            metrics::record_deletion();
                        } else {
                            let job = Job::Delete { account, folder, object_id };
                            let q = queue.clone();
                            let j = job.clone();
                            if let Ok(id) = blocking(move || q.push(&j)).await
                                && !attempt(&queue, &mss, id, &job).await
                            {
                                due.insert(id, (tokio::time::Instant::now() + backoff.after(1), 1));
                            }
                        }
                    }
                }
            }
            () = sleep => {
                let now = tokio::time::Instant::now();
                let mut ready: Vec<(u64, u32)> = due
                    .iter()
                    .filter(|(_, (at, _))| *at <= now)
                    .map(|(id, (_, n))| (*id, *n))
                    .collect();
                // In queue order; once one fails the MSS is taken as down for this round: the
                // rest wait their next turn instead of each waiting for its own timeout.
                ready.sort_unstable();
                let mut down = false;
                for (id, n) in ready {
                    if down {
                        due.insert(id, (now + backoff.after(n + 1), n + 1));
                        continue;
                    }
                    let q = queue.clone();
                    let job = match blocking(move || q.get(id)).await {
                        Ok(Some(j)) => j,
                        Ok(None) => {
                            // Gone, or not a job this version can read: never retried.
                            due.remove(&id);
                            let q = queue.clone();
                            let _ = blocking(move || q.remove(id)).await;
                            continue;
                        }
                        Err(_) => {
                            // The queue file failed: try again later, not at once.
                            due.insert(id, (now + backoff.after(n + 1), n + 1));
                            continue;
                        }
                    };
                    if attempt(&queue, &mss, id, &job).await {
                        due.remove(&id);
                        if let Job::Append { object_id, .. } = &job {
                            appends.remove(object_id);
                        }
                    } else {
                        down = true;
                        let n = n + 1;
                        due.insert(id, (tokio::time::Instant::now() + backoff.after(n), n));
                    }
                }
            }
        }
        depth(&queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn preferences_reload_on_sighup_and_a_bad_file_keeps_the_old() {
        let dir = tempfile::tempdir().expect("dir");
        let prefs = dir.path().join("prefs.toml");
        let user = "sip:alice@cpm.example.net";
        std::fs::write(
            &prefs,
            "[users.\"sip:alice@cpm.example.net\"]\nstandalone = false\n",
        )
        .expect("write");
        let cfg = RecordConfig {
            enabled: true,
            preferences: Some(prefs.clone()),
            queue_path: dir.path().join("q.redb"),
            ..RecordConfig::default()
        };
        let (r, tasks) = Recorder::start(&cfg).expect("start");
        assert!(!r.prefs().of(user).standalone);
        std::fs::write(
            &prefs,
            "[users.\"sip:alice@cpm.example.net\"]\nstandalone = true\n",
        )
        .expect("write");
        let pid = std::process::id().to_string();
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(hup.success());
        let mut reloaded = false;
        for _ in 0..100 {
            if r.prefs().of(user).standalone {
                reloaded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(reloaded, "SIGHUP reloads the preferences");
        std::fs::write(&prefs, "[users.\"alice\"]\nstandalone = false\n").expect("write");
        assert!(r.reload().is_err());
        assert!(r.prefs().of(user).standalone, "the old preferences stay");
        for t in tasks {
            t.abort();
        }
    }

    fn message(from: &str, to: &str, ct: &str, body: &str) -> SipMessage {
        let mut m = SipMessage::request(rsip::Method::Message, to).expect("request");
        for (n, v) in [
            ("From", format!("<{from}>;tag=f1")),
            ("To", format!("<{to}>")),
            ("Call-ID", "c1".to_string()),
            ("CSeq", "1 MESSAGE".to_string()),
            ("Conversation-ID", "conv-u".to_string()),
        ] {
            m.push_header(n, &v).expect("header");
        }
        m.set_body_with_type(Some(ct), Bytes::from(body.to_string()))
            .expect("body");
        m
    }

    fn outcome(send: Vec<(Side, SipMessage)>) -> Outcome {
        Outcome {
            send: send.into(),
            reply: None,
            changes: Default::default(),
            msrp: Vec::new(),
        }
    }

    const CPIM_TEXT: &str = "From: <sip:a@x>\r\nTo: <sip:b@y>\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: M1\r\n\r\nContent-Type: text/plain\r\n\r\nhi";

    #[tokio::test]
    async fn which_pager_messages_are_recorded_and_in_which_form() {
        let dir = tempfile::tempdir().expect("dir");
        let prefs = dir.path().join("prefs.toml");
        std::fs::write(
            &prefs,
            "[users.\"sip:alice@cpm.example.net\"]\nstandalone = true\ncontent_types = [\"text/plain\"]\n",
        )
        .expect("write");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let cfg = RecordConfig {
            enabled: true,
            preferences: Some(prefs),
            queue_path: dir.path().join("q.redb"),
            imap: gone,
            upload_wait_ms: 100,
            retry_base_ms: 60_000,
            ..RecordConfig::default()
        };
        let (r, tasks) = Recorder::start(&cfg).expect("start");
        let (alice, bob) = ("sip:alice@cpm.example.net", "sip:bob@simple.example.net");
        let none = outcome(Vec::new());
        // Alice's CPIM text message: recorded; the wait ends (the MSS is down) in time.
        let m = message(alice, bob, "message/cpim", CPIM_TEXT);
        let wait = r.request(Side::Cpm, &m, &none).expect("recorded");
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .expect("bounded");
        // Someone else's: not recorded; isComposing and notifications never are.
        let other = message("sip:dave@cpm.example.net", bob, "message/cpim", CPIM_TEXT);
        assert!(r.request(Side::Cpm, &other, &none).is_none());
        let typing = CPIM_TEXT.replace("text/plain", "application/im-iscomposing+xml");
        assert!(
            r.request(
                Side::Cpm,
                &message(alice, bob, "message/cpim", &typing),
                &none
            )
            .is_none()
        );
        let imdn = CPIM_TEXT.replace("text/plain", "message/imdn+xml");
        assert!(
            r.request(
                Side::Cpm,
                &message(alice, bob, "message/cpim", &imdn),
                &none
            )
            .is_none()
        );
        // The content type filter applies to the CPIM content.
        let png = CPIM_TEXT.replace("text/plain", "image/png");
        assert!(
            r.request(Side::Cpm, &message(alice, bob, "message/cpim", &png), &none)
                .is_none()
        );
        // From SIMPLE the CPM form is the translated message (a SIMPLE-side form without it:
        // nothing to record).
        let from_simple = message(bob, alice, "message/cpim", CPIM_TEXT);
        assert!(r.request(Side::Simple, &from_simple, &none).is_none());
        let translated = outcome(vec![(Side::Cpm, from_simple.clone())]);
        assert!(r.request(Side::Simple, &from_simple, &translated).is_some());
        // The answer clears what was remembered for the deletion.
        assert_eq!(
            r.pagers.lock().expect("lock").len(),
            1,
            "same Call-ID, CSeq, tag"
        );
        r.delivery_result(&m, 100);
        assert_eq!(
            r.pagers.lock().expect("lock").len(),
            1,
            "provisional: still waiting"
        );
        r.delivery_result(&m, 404);
        assert!(r.pagers.lock().expect("lock").is_empty());
        for t in tasks {
            t.abort();
        }
    }

    #[test]
    fn an_account_always_has_the_same_worker() {
        assert_eq!(lane_of("alice@cpm.example.net", 1), 0);
        let l = lane_of("alice@cpm.example.net", 4);
        assert!(l < 4);
        assert_eq!(lane_of("alice@cpm.example.net", 4), l);
        // FNV-1a of "a" (0xaf63dc4c8601ec8c, its published test vector) mod 7, fixed across releases and restarts.
        assert_eq!(lane_of("a", 7), (0xaf63_dc4c_8601_ec8c_u64 % 7) as usize);
        let spread: std::collections::HashSet<usize> =
            (0..64).map(|i| lane_of(&format!("user{i}@x"), 4)).collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let got: Vec<u128> = (1..=6).map(|n| b.after(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.after(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn kinds_from_the_object() {
        let j = |o: &'static [u8]| Job::Append {
            account: "a".into(),
            folder: "f".into(),
            object_id: "o".into(),
            object: Bytes::from_static(o),
        };
        assert_eq!(
            kind_of(&j(
                b"Content-Type: Multipart/Related; type=\"Application/X-CPM-Session\""
            )),
            "session"
        );
        assert_eq!(kind_of(&j(b"Content-Type: message/cpim")), "standalone");
    }
}
