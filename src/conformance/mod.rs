//! The offline conformance runner: cases as files in `conformance/cases/`, each a sequence of
//! messages run through the translator with a correlation table between them, and what must
//! come out of each.
//!
//! A case file (TOML):
//! ```toml
//! clause = "CPM 2.0 SD 5.2.1.1"          # the clause or RFC section it checks
//! description = "what it shows"
//! [[step]]
//! from = "cpm"                            # the side the message arrives from
//! input = """MESSAGE sip:... SIP/2.0
//! ...
//! """                                     # `\n` line ends become CRLF, Content-Length is computed
//! # input_file = "../../tests/vectors/sip/cpm-pager-message.txt"   (relative to the case file)
//! [step.expect]
//! send = "simple"                         # one message goes to that side ...
//! # error = 403                           # ... or the translation is refused with this status
//! # reply = 200                           # ... or the gateway answers itself
//! # sent = ["ACK", "BYE"]                 # every message sent, in order (status codes for
//! # status = 200                          #   responses); the status of the first one
//! request_uri = "sip:bob@example.net"
//! headers = { "Call-ID" = "gen-2" }       # exact values (first occurrence)
//! header_contains = { "Contact" = "+g.oma.sip-im" }
//! absent = ["Conversation-ID"]
//! content_type = "message/cpim"
//! body_contains = ["imdn.Message-ID: "]
//! body_lacks = ["Content-Disposition"]
//! body_unchanged = true                   # the body is the received one, byte for byte
//! remembered = ["Kn31x9Ab7Qz"]            # imdn Message-IDs the table knows after the step
//! forgotten = []                          # ... and ones it does not
//! conversations = 1                       # table entries of that kind after the step
//! messages = 1
//! dialogs = 2
//! ```
//! An input may be a SIP response (it answers the request the gateway sent to that side with
//! the same Call-ID and CSeq) and may read what the gateway sent last to its side with
//! `{{last.Header}}`; an MSRP input is routed by the table, or by `msrp_leg` for a lone chunk.
//! conformance/README.md says more.
//! Fresh identities are `gen-1`, `gen-2`, ... in the order the translator draws them (one
//! counter per case), the wall-clock time is `2026-11-25T10:00:05.000Z`, so that expected
//! values are exact.

pub mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;

use crate::correlate::{Table, TableLimits};
use crate::mapping::Mappings;
use crate::time::Millis;
use crate::tomlfile::{FileError, parse_toml};
use crate::translate::conversation::IdSource;
use crate::translate::session::{Addresses, SideAddresses};
use crate::translate::state::{Side, View};
use crate::translate::{self, Env, TranslateError};
use crate::wire::sip::{Limits, SipMessage, parse_datagram};
use crate::wire::{Answer, WireError};

/// The wall-clock time the runner gives the translator.
pub const DATETIME: &str = "2026-11-25T10:00:05.000Z";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SideName {
    Cpm,
    Simple,
}

impl From<SideName> for Side {
    fn from(s: SideName) -> Side {
        match s {
            SideName::Cpm => Side::Cpm,
            SideName::Simple => Side::Simple,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseFile {
    pub(crate) clause: String,
    pub(crate) description: String,
    #[serde(rename = "step")]
    pub(crate) steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Step {
    pub(crate) from: SideName,
    pub(crate) input: Option<String>,
    pub(crate) input_file: Option<String>,
    /// For an MSRP input: the other leg as the gateway writes to it.
    pub(crate) msrp_leg: Option<MsrpLegSpec>,
    #[serde(default)]
    pub(crate) expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MsrpLegSpec {
    /// The gateway's URI on the other leg.
    local: String,
    /// The peer's path on the other leg, space separated.
    remote_path: String,
    /// The address of record of the device that sent the chunk.
    sender: String,
    /// The address of record of the user on the other leg.
    recipient: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    pub(crate) error: Option<u16>,
    pub(crate) reply: Option<u16>,
    pub(crate) send: Option<SideName>,
    /// What was sent, in order: methods of requests, status codes of responses.
    #[serde(default)]
    pub(crate) sent: Vec<String>,
    /// The status code of the (first) message sent, a response.
    pub(crate) status: Option<u16>,
    pub(crate) request_uri: Option<String>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) header_contains: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) absent: Vec<String>,
    pub(crate) content_type: Option<String>,
    #[serde(default)]
    pub(crate) body_contains: Vec<String>,
    #[serde(default)]
    pub(crate) body_lacks: Vec<String>,
    pub(crate) body_unchanged: Option<bool>,
    #[serde(default)]
    pub(crate) remembered: Vec<String>,
    #[serde(default)]
    pub(crate) forgotten: Vec<String>,
    pub(crate) conversations: Option<usize>,
    pub(crate) messages: Option<usize>,
    pub(crate) dialogs: Option<usize>,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case file's name.
    pub name: String,
    /// The clause it checks.
    pub clause: String,
    /// `None` when it passed; else what went wrong, and at which step.
    pub failure: Option<String>,
}

struct Counter(u64);

impl IdSource for Counter {
    fn fresh_id(&mut self) -> Bytes {
        self.0 += 1;
        Bytes::from(format!("gen-{}", self.0))
    }
}

/// Turn case text into wire bytes: `\n` line ends become CRLF, and a Content-Length is written
/// for the body (any Content-Length in the text is replaced).
pub(crate) fn wire_bytes(text: &str) -> Bytes {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut out = String::with_capacity(text.len() + 64);
    for line in head.lines() {
        if !line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let body = body.replace('\n', "\r\n");
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    out.push_str(&body);
    Bytes::from(out)
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// What a step sent: a SIP message or an MSRP message (both runners check it).
pub(crate) enum Sent {
    Sip(SipMessage),
    Msrp(crate::wire::msrp::Message),
}

impl Sent {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        match self {
            Sent::Sip(m) => m.header(name).map(str::to_string),
            Sent::Msrp(m) => m
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        }
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        match self {
            Sent::Sip(m) => m.header_all(name).map(str::to_string).collect(),
            Sent::Msrp(m) => m
                .headers_named(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect(),
        }
    }
    pub(crate) fn content_type(&self) -> Option<String> {
        self.header("Content-Type")
    }
    pub(crate) fn body(&self) -> Bytes {
        match self {
            Sent::Sip(m) => m.body().clone(),
            Sent::Msrp(m) => m.body.clone().unwrap_or_default(),
        }
    }
    pub(crate) fn request_uri(&self) -> Option<String> {
        match self {
            Sent::Sip(m) => m
                .request_uri()
                .map(|u| String::from_utf8_lossy(u).into_owned()),
            Sent::Msrp(_) => None,
        }
    }
    /// How `sent = [...]` names it: the method of a request, the status code of a response.
    pub(crate) fn what(&self) -> String {
        match self {
            Sent::Sip(m) => match m.status_code() {
                Some(c) => c.to_string(),
                None => m
                    .method()
                    .map(|m| crate::wire::sip::method_name(m).to_string())
                    .unwrap_or_default(),
            },
            Sent::Msrp(m) => match m.response_code() {
                Some(c) => c.to_string(),
                None => m
                    .method()
                    .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                    .unwrap_or_default(),
            },
        }
    }
}

/// The gateway's own addresses on each side in conformance runs.
pub fn addresses() -> Addresses {
    let side = |contact: &str, port: u16| SideAddresses {
        contact: contact.to_string(),
        msrp: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        secure: false,
    };
    Addresses {
        cpm: side("sip:iwf@127.0.0.1:5060", 2855),
        simple: side("sip:iwf@127.0.0.1:5062", 2856),
    }
}

/// Why a step produced nothing: the translator refused it, or the case is incomplete.
enum Failure {
    Refused(TranslateError),
    Case(String),
}

/// What one translation produced: sent message(s), a reply, table changes.
struct Produced {
    sent: Vec<(Side, Sent)>,
    reply: Option<u16>,
    changes: Vec<crate::translate::state::Change>,
}

fn translate_sip(
    incoming: &SipMessage,
    from: Side,
    run: &mut Run,
    mappings: &Mappings,
    env: &mut Env<'_>,
) -> Result<Produced, Failure> {
    let view = run.table.view(env.now);
    let outcome = if incoming.is_request() {
        translate::sip_request(incoming, from, &view, mappings, &addresses(), env)
    } else {
        // A response answers a request the gateway sent to `from`: the runner plays the node's
        // transaction layer and finds the request the gateway had received for it.
        let call_id = incoming.call_id().unwrap_or_default();
        let cseq = incoming.header("CSeq").unwrap_or_default();
        let Some(p) = run
            .pending
            .iter()
            .find(|p| p.to == from && p.call_id == call_id && p.cseq == cseq)
        else {
            return Err(Failure::Case(format!(
                "no request sent to {from:?} with Call-ID {call_id} and CSeq {cseq}"
            )));
        };
        translate::session::session_response(
            &p.received,
            p.from,
            incoming,
            &view,
            mappings,
            &addresses(),
            env,
        )
    }
    .map_err(Failure::Refused)?;
    for (side, m) in &outcome.send {
        if m.is_request() && !matches!(m.method(), Some(rsip::Method::Ack | rsip::Method::Cancel)) {
            run.pending.push(Pending {
                to: *side,
                call_id: m.call_id().unwrap_or_default().to_string(),
                cseq: m.header("CSeq").unwrap_or_default().to_string(),
                received: incoming.clone(),
                from,
            });
        }
        run.last_sent.insert(*side, m.clone());
    }
    Ok(Produced {
        sent: outcome
            .send
            .into_iter()
            .map(|(side, m)| (side, Sent::Sip(m)))
            .collect(),
        reply: outcome.reply.map(|r| r.status),
        changes: outcome.changes.into_vec(),
    })
}

/// What the runner keeps between the steps of a case, as the node would: the table, fresh
/// ids, the requests the gateway sent and is owed an answer for, the last message it sent to
/// each side (what `{{last.Header}}` in a step's input reads).
struct Run {
    table: Table,
    ids: Counter,
    pending: Vec<Pending>,
    last_sent: std::collections::HashMap<Side, SipMessage>,
}

/// A request the gateway sent to `to`, for the request `received` from `from`.
struct Pending {
    to: Side,
    call_id: String,
    cseq: String,
    received: SipMessage,
    from: Side,
}

/// `{{last.Header}}` in a step's input: that header of the last SIP message the gateway sent
/// to the side the step comes from (its Call-ID, its From with the gateway's tag, ...).
fn fill(text: &str, from: Side, run: &Run) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{last.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 7..];
        let end = after
            .find("}}")
            .ok_or_else(|| "unclosed {{last.".to_string())?;
        let name = &after[..end];
        let value = run
            .last_sent
            .get(&from)
            .and_then(|m| m.header(name))
            .ok_or_else(|| format!("{{{{last.{name}}}}}: nothing sent to {from:?} with {name}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn translate_msrp(
    incoming: &crate::wire::msrp::Message,
    from: Side,
    leg: Option<&MsrpLegSpec>,
    table: &Table,
    mappings: &Mappings,
    env: &mut Env<'_>,
) -> Result<Produced, Failure> {
    use crate::translate::chat::{ChatLeg, ChatParties, chat_report, chat_send};
    use crate::translate::state::{Device, DialogKey};
    use crate::wire::msrp::{Method, MsrpUri};

    let Some(spec) = leg else {
        // A session set up by earlier steps: the table says where the chunk goes.
        let view = table.view(env.now);
        let (to, out) =
            crate::translate::chat::msrp_request(incoming, &view, mappings, &addresses(), env)
                .map_err(Failure::Refused)?;
        return Ok(Produced {
            sent: vec![(to, Sent::Msrp(out.send))],
            reply: None,
            changes: out.changes,
        });
    };
    let _ = from;
    let parse_uri = |u: &str| {
        MsrpUri::parse_str(u).map_err(|e| Failure::Case(format!("msrp_leg URI {u:?}: {e}")))
    };
    let out = ChatLeg {
        local: parse_uri(&spec.local)?,
        remote_path: spec
            .remote_path
            .split_whitespace()
            .map(parse_uri)
            .collect::<Result<_, _>>()?,
    };
    // The session's identities: from the MSRP leg the chunk arrived on, to its dialog.
    let view = table.view(env.now);
    let conversation = incoming
        .to_path()
        .ok()
        .and_then(|p| p.first().and_then(|u| u.session_id.clone()))
        .and_then(|sid| view.msrp(&sid))
        .and_then(|peer| {
            view.dialog(&DialogKey {
                side: from,
                call_id: peer.call_id,
            })
        })
        .and_then(|d| d.conversation);
    let parties = ChatParties {
        sender: Device {
            aor: Bytes::from(spec.sender.clone()),
            gruu: None,
            instance: None,
        },
        recipient: Bytes::from(spec.recipient.clone()),
        conversation,
    };
    let (sent, changes) = match incoming.method() {
        Some(Method::Report) => (chat_report(incoming, &out, env), Vec::new()),
        _ => {
            let o = chat_send(incoming, from, &out, &parties, mappings, env)
                .map_err(Failure::Refused)?;
            (o.send, o.changes)
        }
    };
    Ok(Produced {
        sent: vec![(from.other(), Sent::Msrp(sent))],
        reply: None,
        changes,
    })
}

/// Run one step; `Err` says what did not match.
fn run_step(
    step: &Step,
    base: &Path,
    run: &mut Run,
    mappings: &Mappings,
    now: Millis,
) -> Result<(), String> {
    let text = match (&step.input, &step.input_file) {
        (Some(t), None) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(base.join(f))
            .map_err(|e| format!("cannot read input_file {f}: {e}"))?,
        _ => return Err("a step needs exactly one of input and input_file".into()),
    };
    let e = &step.expect;
    let from: Side = step.from.into();
    let text = fill(&text, from, run)?;
    let refused = |status: u16, why: String| {
        check(e.error == Some(status), || {
            format!("refused with {status}: {why}")
        })
    };
    let (incoming_body, produced) = if text.starts_with("MSRP ") {
        let wire = Bytes::from(text.replace("\r\n", "\n").replace('\n', "\r\n"));
        let incoming = match crate::wire::msrp::parse(wire, &crate::wire::msrp::Limits::default()) {
            Ok(m) => m,
            Err(err) => return refused(wire_status(&err), err.to_string()),
        };
        let mut env = Env {
            now,
            ids: &mut run.ids,
            datetime: DATETIME,
        };
        let produced = match translate_msrp(
            &incoming,
            from,
            step.msrp_leg.as_ref(),
            &run.table,
            mappings,
            &mut env,
        ) {
            Ok(p) => p,
            Err(Failure::Refused(err)) => return refused(err.status(), err.to_string()),
            Err(Failure::Case(why)) => return Err(why),
        };
        (incoming.body.clone().unwrap_or_default(), produced)
    } else {
        let incoming = match parse_datagram(wire_bytes(&text), &Limits::default()) {
            Ok(m) => m,
            Err(err) => return refused(wire_status(&err), err.to_string()),
        };
        let mut ids = std::mem::replace(&mut run.ids, Counter(0));
        let mut env = Env {
            now,
            ids: &mut ids,
            datetime: DATETIME,
        };
        let result = translate_sip(&incoming, from, run, mappings, &mut env);
        run.ids = ids;
        match result {
            Ok(p) => (incoming.body().clone(), p),
            Err(Failure::Refused(err)) => return refused(err.status(), err.to_string()),
            Err(Failure::Case(why)) => return Err(why),
        }
    };
    let table = &run.table;
    check(e.error.is_none(), || {
        format!("expected error {:?}, got a translation", e.error)
    })?;
    table
        .apply(&produced.changes, now)
        .map_err(|err| format!("table: {err}"))?;
    check(e.reply == produced.reply, || {
        format!("reply: expected {:?}, got {:?}", e.reply, produced.reply)
    })?;
    let what: Vec<String> = produced.sent.iter().map(|(_, m)| m.what()).collect();
    if !e.sent.is_empty() {
        check(what == e.sent, || {
            format!("sent {what:?}, expected {:?}", e.sent)
        })?;
    }
    match (e.send, produced.sent.as_slice()) {
        (None, []) => {}
        (Some(side), [(to, out), more @ ..]) if more.is_empty() || !e.sent.is_empty() => {
            check(Side::from(side) == *to, || {
                format!("sent to {to:?}, expected {side:?}")
            })?;
            if let Some(status) = e.status {
                check(what.first() == Some(&status.to_string()), || {
                    format!("sent {what:?}, expected status {status}")
                })?;
            }
            check_message(e, &incoming_body, out)?;
        }
        (want, got) => {
            return Err(format!(
                "expected {} message(s) sent, got {} ({what:?})",
                usize::from(want.is_some()),
                got.len()
            ));
        }
    }
    let view = table.view(now);
    for id in &e.remembered {
        check(view.message(id.as_bytes()).is_some(), || {
            format!("Message-ID {id} not remembered")
        })?;
    }
    for id in &e.forgotten {
        check(view.message(id.as_bytes()).is_none(), || {
            format!("Message-ID {id} still remembered")
        })?;
    }
    let stats = table.stats();
    if let Some(n) = e.conversations {
        check(stats.conversations.len == n, || {
            format!(
                "{} conversations remembered, expected {n}",
                stats.conversations.len
            )
        })?;
    }
    if let Some(n) = e.dialogs {
        check(stats.dialogs.len == n, || {
            format!("{} dialogs remembered, expected {n}", stats.dialogs.len)
        })?;
    }
    if let Some(n) = e.messages {
        check(stats.messages.len == n, || {
            format!("{} messages remembered, expected {n}", stats.messages.len)
        })?;
    }
    Ok(())
}

/// The status a codec error deserves (0: dropped, no answer).
fn wire_status(err: &dyn WireError) -> u16 {
    match err.answer() {
        Answer::Status(s) => s,
        Answer::Drop => 0,
    }
}

fn check_message(e: &Expect, incoming_body: &Bytes, out: &Sent) -> Result<(), String> {
    if let Some(uri) = &e.request_uri {
        let got = out.request_uri();
        check(got.as_deref() == Some(uri.as_str()), || {
            format!("Request-URI {got:?}, expected {uri}")
        })?;
    }
    for (name, want) in &e.headers {
        let got = out.header(name);
        check(got.as_deref() == Some(want.as_str()), || {
            format!("{name}: {got:?}, expected {want:?}")
        })?;
    }
    for (name, part) in &e.header_contains {
        let got = out.header_all(name);
        check(got.iter().any(|v| v.contains(part.as_str())), || {
            format!("{name}: {got:?} does not contain {part:?}")
        })?;
    }
    for name in &e.absent {
        check(out.header(name).is_none(), || {
            format!("{name} present: {:?}", out.header(name))
        })?;
    }
    if let Some(ct) = &e.content_type {
        let got = out.content_type();
        check(got.as_deref() == Some(ct.as_str()), || {
            format!("Content-Type {got:?}, expected {ct}")
        })?;
    }
    let body_bytes = out.body();
    let body = String::from_utf8_lossy(&body_bytes);
    for part in &e.body_contains {
        check(body.contains(part.as_str()), || {
            format!("body lacks {part:?}:\n{body}")
        })?;
    }
    for part in &e.body_lacks {
        check(!body.contains(part.as_str()), || {
            format!("body contains {part:?}:\n{body}")
        })?;
    }
    if let Some(unchanged) = e.body_unchanged {
        check((body_bytes == incoming_body) == unchanged, || {
            format!("body_unchanged = {unchanged} does not hold")
        })?;
    }
    Ok(())
}

/// Run one case file.
pub fn run_case(path: &Path, mappings: &Mappings) -> Result<CaseResult, FileError> {
    let text = crate::tomlfile::read(path)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let case: CaseFile = parse_toml((&path.display().to_string(), &text))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut run = Run {
        table: Table::new(TableLimits::default()),
        ids: Counter(0),
        pending: Vec::new(),
        last_sent: std::collections::HashMap::new(),
    };
    let mut failure = None;
    if case.description.trim().is_empty() || case.clause.trim().is_empty() {
        failure = Some("a case must name its clause and describe what it checks".to_string());
    }
    for (i, step) in case.steps.iter().enumerate() {
        if failure.is_some() {
            break;
        }
        let now = Millis(1_000 * (i as u64 + 1));
        if let Err(why) = run_step(step, base, &mut run, mappings, now) {
            failure = Some(format!("step {}: {why}", i + 1));
        }
    }
    Ok(CaseResult {
        name,
        clause: case.clause,
        failure,
    })
}

/// Run every `*.toml` case in `dir`, in name order.
pub fn run_dir(dir: &Path, mappings: &Mappings) -> Result<Vec<CaseResult>, FileError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| FileError {
            file: dir.display().to_string(),
            line: 1,
            column: 1,
            reason: format!("cannot read directory: {e}"),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files.iter().map(|f| run_case(f, mappings)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_writes_crlf_and_content_length() {
        let b = wire_bytes("MESSAGE sip:a@b SIP/2.0\nContent-Length: 99\nTo: x\n\nhi\nthere");
        assert_eq!(
            &b[..],
            b"MESSAGE sip:a@b SIP/2.0\r\nTo: x\r\nContent-Length: 9\r\n\r\nhi\r\nthere"
        );
    }
}
