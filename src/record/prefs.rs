//! Per-user recording preferences (CPM 2.0 SD 5.2.1.2): whether a user's standalone messages,
//! chat sessions and file transfers are recorded in the Message Storage Server, with filter
//! criteria by peer, content type and direction, and the service provider's policy on staying
//! in the media path (SD 5.2.1.2.2 / 5.2.1.2.3 NOTE 1).
//!
//! The file (TOML, named by `[record] preferences`, reloaded on SIGHUP):
//!
//! ```toml
//! may_stay_in_media_path = true      # SP policy; false: sessions and file transfers unrecorded
//! [default]                          # the policy of every user not listed
//! standalone = false
//! [users."sip:alice@cpm.example.net"]
//! standalone = true
//! session = true
//! file_transfer = false
//! exclude_peers = ["sip:spam@simple.example.net"]
//! content_types = ["text/plain"]     # only these (empty or absent: all)
//! directions = ["outgoing", "incoming"]
//! account = "alice"                  # the IMAP user; default: the address without "sip:"
//! ```

use std::collections::HashMap;

use serde::Deserialize;

use crate::tomlfile::{FileError, Source, error_at, parse_toml};

/// What is being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A pager-mode or large-message standalone message (SD 5.2.1.2.1).
    Standalone,
    /// A chat session's history (SD 5.2.1.2.3).
    Session,
    /// A file transfer (SD 5.2.1.2.2).
    FileTransfer,
}

/// The direction of a message seen from the recorded user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The user sent it.
    Outgoing,
    /// The user received it.
    Incoming,
}

/// One user's preferences.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserPrefs {
    /// Record standalone messages.
    pub standalone: bool,
    /// Record chat sessions.
    pub session: bool,
    /// Record file transfers.
    pub file_transfer: bool,
    /// Conversations with these peers are never recorded (addresses compared by [`aor`]).
    pub exclude_peers: Vec<String>,
    /// Only these content types are recorded; empty: all.
    pub content_types: Vec<String>,
    /// Only these directions are recorded.
    pub directions: Vec<Direction>,
    /// The user's IMAP account; `None`: [`default_account`] of the address.
    pub account: Option<String>,
}

impl Default for UserPrefs {
    fn default() -> Self {
        UserPrefs {
            standalone: false,
            session: false,
            file_transfer: false,
            exclude_peers: Vec::new(),
            content_types: Vec::new(),
            directions: vec![Direction::Outgoing, Direction::Incoming],
            account: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrefs {
    #[serde(default = "yes")]
    may_stay_in_media_path: bool,
    #[serde(default)]
    default: UserPrefs,
    #[serde(default)]
    users: HashMap<String, toml::Spanned<UserPrefs>>,
}

fn yes() -> bool {
    true
}

/// Every user's preferences and the service provider's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    /// SP policy: the node may stay in the media path of sessions to record them.
    pub may_stay_in_media_path: bool,
    /// The policy of users not listed.
    pub default: UserPrefs,
    users: HashMap<String, UserPrefs>,
}

impl Default for Preferences {
    /// Nobody recorded.
    fn default() -> Self {
        Preferences {
            may_stay_in_media_path: true,
            default: UserPrefs::default(),
            users: HashMap::new(),
        }
    }
}

/// What one message or session is, for [`Preferences::decide`].
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The user whose preferences apply (an address as in From/To).
    pub user: &'a str,
    /// The other party.
    pub peer: &'a str,
    /// Standalone, session or file transfer.
    pub kind: Kind,
    /// From the user's point of view.
    pub direction: Direction,
    /// The content type (of the message; for a session, `None`).
    pub content_type: Option<&'a str>,
}

impl Preferences {
    /// Parse and check a preferences file.
    pub fn parse(src: Source<'_>) -> Result<Preferences, FileError> {
        let raw: RawPrefs = parse_toml(src)?;
        let mut users = HashMap::with_capacity(raw.users.len());
        for (name, p) in raw.users {
            let span = p.span();
            let key = aor(&name);
            if !key.contains(':') {
                return Err(error_at(
                    src,
                    span.start,
                    format!("{name:?} is not a SIP or tel URI"),
                ));
            }
            users.insert(key, p.into_inner());
        }
        Ok(Preferences {
            may_stay_in_media_path: raw.may_stay_in_media_path,
            default: raw.default,
            users,
        })
    }

    /// Read and check a preferences file.
    pub fn load(path: &std::path::Path) -> Result<Preferences, FileError> {
        let text = crate::tomlfile::read(path)?;
        Self::parse((&path.display().to_string(), &text))
    }

    /// The preferences of `user` (the default policy when not listed).
    pub fn of(&self, user: &str) -> &UserPrefs {
        self.users.get(&aor(user)).unwrap_or(&self.default)
    }

    /// The IMAP account to record `s` into, or `None` when it is not recorded.
    pub fn decide(&self, s: &Subject<'_>) -> Option<String> {
        let p = self.of(s.user);
        let wanted = match s.kind {
            Kind::Standalone => p.standalone,
            // SD 5.2.1.2.3 NOTE 1: only where the SP lets the function stay in the media path.
            Kind::Session => p.session && self.may_stay_in_media_path,
            Kind::FileTransfer => p.file_transfer && self.may_stay_in_media_path,
        };
        if !wanted || !p.directions.contains(&s.direction) {
            return None;
        }
        let peer = aor(s.peer);
        if p.exclude_peers.iter().any(|x| aor(x) == peer) {
            return None;
        }
        if let Some(ct) = s.content_type
            && !p.content_types.is_empty()
        {
            let ct = media_type(ct);
            if !p.content_types.iter().any(|x| media_type(x) == ct) {
                return None;
            }
        }
        Some(
            p.account
                .clone()
                .unwrap_or_else(|| default_account(&aor(s.user))),
        )
    }
}

/// An address reduced to what identifies the user: the URI inside `<...>` (or the value up
/// to its first `;` parameter), without URI parameters or headers, scheme and host lowercased
/// (RFC 3261 §19.1.4: the user part is case-sensitive, the rest is not).
pub fn aor(value: &str) -> String {
    let v = value.trim();
    let uri = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v.get(a + 1..b).unwrap_or(v),
        _ => v.split(';').next().unwrap_or(v),
    };
    let uri = uri.split(['?', ';']).next().unwrap_or(uri).trim();
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            let rest = match rest.rsplit_once('@') {
                Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()),
                None => rest.to_string(),
            };
            format!("{}:{rest}", scheme.to_ascii_lowercase())
        }
        None => uri.to_string(),
    }
}

/// The IMAP account of an address: the address without its scheme (`alice@cpm.example.net`).
pub fn default_account(aor: &str) -> String {
    aor.split_once(':').map_or(aor, |(_, r)| r).to_string()
}

/// `type/subtype` of a Content-Type value, lowercased, without parameters.
pub fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
may_stay_in_media_path = true
[default]
standalone = false
[users."sip:alice@CPM.example.net"]
standalone = true
session = true
exclude_peers = ["<sip:spam@simple.example.net>;tag=1"]
content_types = ["text/plain", "message/cpim"]
directions = ["outgoing"]
[users."sip:carol@cpm.example.net"]
standalone = true
account = "carol-box"
"#;

    fn subject<'a>(user: &'a str, peer: &'a str, dir: Direction, ct: &'a str) -> Subject<'a> {
        Subject {
            user,
            peer,
            kind: Kind::Standalone,
            direction: dir,
            content_type: Some(ct),
        }
    }

    #[test]
    fn addresses_reduce_to_the_user() {
        assert_eq!(
            aor("\"Alice\" <sip:alice@CPM.Example.net;transport=tcp>;tag=9"),
            "sip:alice@cpm.example.net"
        );
        assert_eq!(aor("sip:Bob@x.org;tag=1"), "sip:Bob@x.org");
        assert_eq!(aor("tel:+4912345"), "tel:+4912345");
        assert_eq!(
            default_account("sip:alice@cpm.example.net"),
            "alice@cpm.example.net"
        );
    }

    #[test]
    fn listed_users_get_their_filters() {
        let p = Preferences::parse(("p.toml", FILE)).expect("valid");
        let a = "<sip:alice@cpm.example.net>";
        let ok = p.decide(&subject(
            a,
            "sip:bob@simple.example.net",
            Direction::Outgoing,
            "message/cpim",
        ));
        assert_eq!(ok.as_deref(), Some("alice@cpm.example.net"));
        // The excluded peer, however written.
        let spam = p.decide(&subject(
            a,
            "sip:spam@SIMPLE.example.net",
            Direction::Outgoing,
            "text/plain",
        ));
        assert_eq!(spam, None);
        // Direction and content type filters.
        let incoming = p.decide(&subject(
            a,
            "sip:bob@simple.example.net",
            Direction::Incoming,
            "text/plain",
        ));
        assert_eq!(incoming, None);
        let image = p.decide(&subject(
            a,
            "sip:bob@simple.example.net",
            Direction::Outgoing,
            "Image/PNG",
        ));
        assert_eq!(image, None);
        let param = p.decide(&subject(
            a,
            "sip:bob@simple.example.net",
            Direction::Outgoing,
            "Text/Plain;charset=UTF-8",
        ));
        assert!(param.is_some());
        // Account override; unlisted users follow the default policy.
        let c = p.decide(&subject(
            "sip:carol@cpm.example.net",
            "sip:bob@x",
            Direction::Incoming,
            "text/plain",
        ));
        assert_eq!(c.as_deref(), Some("carol-box"));
        assert_eq!(
            p.decide(&subject(
                "sip:dave@cpm.example.net",
                "sip:bob@x",
                Direction::Outgoing,
                "text/plain"
            )),
            None
        );
    }

    #[test]
    fn sessions_need_the_media_path_policy() {
        let mut p = Preferences::parse(("p.toml", FILE)).expect("valid");
        let s = Subject {
            user: "sip:alice@cpm.example.net",
            peer: "sip:bob@simple.example.net",
            kind: Kind::Session,
            direction: Direction::Outgoing,
            content_type: None,
        };
        assert!(p.decide(&s).is_some());
        p.may_stay_in_media_path = false;
        assert_eq!(p.decide(&s), None);
        let ft = Subject {
            kind: Kind::FileTransfer,
            ..s
        };
        p.may_stay_in_media_path = true;
        assert_eq!(p.decide(&ft), None, "file_transfer is off for alice");
    }

    #[test]
    fn a_bad_file_names_its_fault() {
        let e =
            Preferences::parse(("p.toml", "[users.\"alice\"]\nstandalone = true\n")).unwrap_err();
        assert!(e.reason.contains("not a SIP or tel URI"), "{e}");
        let e = Preferences::parse(("p.toml", "[default]\nstandalon = true\n")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e =
            Preferences::parse(("p.toml", "[default]\ndirections = [\"sideways\"]\n")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert_eq!(
            Preferences::parse(("p.toml", "")).expect("empty"),
            Preferences::default()
        );
    }
}
