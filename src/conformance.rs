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
//! ```
//! Fresh identities are `gen-1`, `gen-2`, ... in the order the translator draws them (one
//! counter per case), the wall-clock time is `2026-11-25T10:00:05.000Z`, so that expected
//! values are exact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;

use crate::correlate::{Table, TableLimits};
use crate::mapping::Mappings;
use crate::time::Millis;
use crate::tomlfile::{FileError, parse_toml};
use crate::translate::conversation::IdSource;
use crate::translate::state::{Side, View};
use crate::translate::{Env, pager};
use crate::wire::sip::{Limits, SipMessage, parse_datagram};
use crate::wire::{Answer, WireError};

/// The wall-clock time the runner gives the translator.
pub const DATETIME: &str = "2026-11-25T10:00:05.000Z";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SideName {
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
struct CaseFile {
    clause: String,
    description: String,
    #[serde(rename = "step")]
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    from: SideName,
    input: Option<String>,
    input_file: Option<String>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    error: Option<u16>,
    reply: Option<u16>,
    send: Option<SideName>,
    request_uri: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    header_contains: BTreeMap<String, String>,
    #[serde(default)]
    absent: Vec<String>,
    content_type: Option<String>,
    #[serde(default)]
    body_contains: Vec<String>,
    #[serde(default)]
    body_lacks: Vec<String>,
    body_unchanged: Option<bool>,
    #[serde(default)]
    remembered: Vec<String>,
    #[serde(default)]
    forgotten: Vec<String>,
    conversations: Option<usize>,
    messages: Option<usize>,
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
fn wire_bytes(text: &str) -> Bytes {
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

/// Run one step; `Err` says what did not match.
fn run_step(
    step: &Step,
    base: &Path,
    table: &Table,
    mappings: &Mappings,
    ids: &mut Counter,
    now: Millis,
) -> Result<(), String> {
    let text = match (&step.input, &step.input_file) {
        (Some(t), None) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(base.join(f))
            .map_err(|e| format!("cannot read input_file {f}: {e}"))?,
        _ => return Err("a step needs exactly one of input and input_file".into()),
    };
    let e = &step.expect;
    let incoming = match parse_datagram(wire_bytes(&text), &Limits::default()) {
        Ok(m) => m,
        Err(err) => {
            let status = match err.answer() {
                Answer::Status(s) => s,
                Answer::Drop => 0,
            };
            return check(e.error == Some(status), || {
                format!("input refused by the SIP codec with {status}: {err}")
            });
        }
    };
    let mut env = Env {
        now,
        ids,
        datetime: DATETIME,
    };
    let view = table.view(now);
    let outcome =
        match pager::message_request(&incoming, step.from.into(), &view, mappings, &mut env) {
            Ok(o) => o,
            Err(err) => {
                return check(e.error == Some(err.status()), || {
                    format!("refused with {}: {err}", err.status())
                });
            }
        };
    check(e.error.is_none(), || {
        format!("expected error {:?}, got a translation", e.error)
    })?;
    table
        .apply(&outcome.changes, now)
        .map_err(|err| format!("table: {err}"))?;
    check(e.reply == outcome.reply.map(|r| r.status), || {
        format!("reply: expected {:?}, got {:?}", e.reply, outcome.reply)
    })?;
    match (e.send, outcome.send.as_slice()) {
        (None, []) => {}
        (Some(side), [(to, out)]) => {
            check(Side::from(side) == *to, || {
                format!("sent to {to:?}, expected {side:?}")
            })?;
            check_message(e, &incoming, out)?;
        }
        (want, got) => {
            return Err(format!(
                "expected {} message(s) sent, got {}",
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
    if let Some(n) = e.messages {
        check(stats.messages.len == n, || {
            format!("{} messages remembered, expected {n}", stats.messages.len)
        })?;
    }
    Ok(())
}

fn check_message(e: &Expect, incoming: &SipMessage, out: &SipMessage) -> Result<(), String> {
    if let Some(uri) = &e.request_uri {
        let got = out.request_uri().map(String::from_utf8_lossy);
        check(got.as_deref() == Some(uri.as_str()), || {
            format!("Request-URI {got:?}, expected {uri}")
        })?;
    }
    for (name, want) in &e.headers {
        let got = out.header(name);
        check(got == Some(want.as_str()), || {
            format!("{name}: {got:?}, expected {want:?}")
        })?;
    }
    for (name, part) in &e.header_contains {
        let got: Vec<&str> = out.header_all(name).collect();
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
        check(out.content_type() == Some(ct.as_str()), || {
            format!("Content-Type {:?}, expected {ct}", out.content_type())
        })?;
    }
    let body = String::from_utf8_lossy(out.body());
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
        check((out.body() == incoming.body()) == unchanged, || {
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
    let table = Table::new(TableLimits::default());
    let mut ids = Counter(0);
    let mut failure = None;
    if case.description.trim().is_empty() || case.clause.trim().is_empty() {
        failure = Some("a case must name its clause and describe what it checks".to_string());
    }
    for (i, step) in case.steps.iter().enumerate() {
        if failure.is_some() {
            break;
        }
        let now = Millis(1_000 * (i as u64 + 1));
        if let Err(why) = run_step(step, base, &table, mappings, &mut ids, now) {
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
