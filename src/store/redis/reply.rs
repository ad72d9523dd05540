//! Reading script replies back into store types: every reply's layout is
//! decoded here, one function per layout, named by the operation in
//! [`ops`](super::ops) that gets it. Anything that does not have the
//! expected shape is a [`StoreError::corrupt`], never a panic.

use std::collections::HashMap;

use redis::Value;

use super::ops::Chunk;
use crate::clock::Millis;
use crate::store::tokens::{PreviousToken, Resolution, TokenSlots};
use crate::store::{
    BoundUser, Connection, Fetched, Load, LoginOutcome, Lookup, Result, Rotated, SessionInfo,
    SessionRecord, StoreError, TokenState,
};
use crate::token::SessionId;

/// `load`: `{'missing'} | {'stale', id} | {'found', id, state, sealed, seen, flat}`.
pub(super) fn lookup(reply: &Value) -> Result<Lookup> {
    let items = items(reply)?;
    match utf8(at(items, 0)?)? {
        "missing" => Ok(Lookup::Missing),
        "stale" => Ok(Lookup::Stale(session_id(at(items, 1)?)?)),
        "found" => {
            let id = session_id(at(items, 1)?)?;
            let token = match utf8(at(items, 2)?)? {
                "current" => TokenState::Current,
                "replaced" => TokenState::Replaced {
                    sealed: text(at(items, 3)?)?,
                },
                "superseded" => TokenState::Superseded,
                "lapsed" => TokenState::Lapsed,
                other => {
                    return Err(StoreError::corrupt(format!(
                        "unknown token state {other:?}"
                    )))
                }
            };
            let record = record(id, at(items, 4)?, at(items, 5)?)?;
            Ok(Lookup::Found { record, token })
        }
        other => Err(StoreError::corrupt(format!("unknown load reply {other:?}"))),
    }
}

/// `rotate`: `{'installed'} | {'existing', sealed} | {'superseded'} | {'gone'}`.
pub(super) fn rotated(reply: &Value) -> Result<Rotated> {
    let items = items(reply)?;
    match utf8(at(items, 0)?)? {
        "installed" => Ok(Rotated::Installed),
        "existing" => Ok(Rotated::Existing(text(at(items, 1)?)?)),
        "superseded" => Ok(Rotated::Superseded),
        "gone" => Ok(Rotated::Gone),
        other => Err(StoreError::corrupt(format!(
            "unknown rotate reply {other:?}"
        ))),
    }
}

/// `create`, `save`, `regenerate`, `destroy`, `connect`: 1 if it happened,
/// 0 if the session was gone.
pub(super) fn flag(reply: &Value) -> Result<bool> {
    Ok(int(reply)? == 1)
}

/// `login`: `{evicted ids, data pairs}`.
pub(super) fn login(reply: &Value) -> Result<LoginOutcome> {
    let items = items(reply)?;
    Ok(LoginOutcome {
        evicted: session_ids(at(items, 0)?)?,
        data: pairs(at(items, 1)?)?.into_iter().collect::<HashMap<_, _>>(),
    })
}

/// `fetch`: `{} | {replacement sealed or '', known is current (0/1), seen, flat}`.
pub(super) fn fetched(id: &SessionId, reply: &Value) -> Result<Option<Fetched>> {
    let items = items(reply)?;
    if items.is_empty() {
        return Ok(None);
    }
    let replacement = text(at(items, 0)?)?;
    Ok(Some(Fetched {
        replacement: (!replacement.is_empty()).then_some(replacement),
        known_is_current: int(at(items, 1)?)? == 1,
        record: record(id.clone(), at(items, 2)?, at(items, 3)?)?,
    }))
}

/// `revoke`: `{ids revoked, entries left to look at}`.
pub(super) fn revoked(reply: &Value) -> Result<(Vec<SessionId>, usize)> {
    let items = items(reply)?;
    let left = usize::try_from(int(at(items, 1)?)?)
        .map_err(|_| StoreError::corrupt("a negative count"))?;
    Ok((session_ids(at(items, 0)?)?, left))
}

/// A chunk of a scan of a user's index: `{next cursor, what the chunk gave}`.
pub(super) fn chunk<T>(reply: &Value, each: impl FnOnce(&Value) -> Result<T>) -> Result<Chunk<T>> {
    let items = items(reply)?;
    Ok(Chunk {
        next: text(at(items, 0)?)?,
        items: each(at(items, 1)?)?,
    })
}

/// `sync_user`'s chunk: how many sessions it updated.
pub(super) fn count(reply: &Value) -> Result<usize> {
    usize::try_from(int(reply)?).map_err(|_| StoreError::corrupt("a negative count"))
}

/// `list`'s chunk: flat rows of [`LIST_ROW`] values, per session: id,
/// created, seen, idle, absolute deadline or '', `=label` or '', device
/// json or ''.
pub(super) fn session_infos(reply: &Value) -> Result<Vec<SessionInfo>> {
    let rows = items(reply)?;
    if rows.len() % LIST_ROW != 0 {
        return Err(StoreError::corrupt("short session row"));
    }
    rows.chunks_exact(LIST_ROW).map(session_info).collect()
}

const LIST_ROW: usize = 7;

fn session_info(row: &[Value]) -> Result<SessionInfo> {
    let [id, created, seen, idle, abs, label, device] = row else {
        return Err(StoreError::corrupt("short session row"));
    };
    let number = |v| utf8(v).and_then(number);
    let last_seen = number(seen)?;
    let absolute = utf8(abs)?;
    Ok(SessionInfo {
        id: session_id(id)?,
        created_at: number(created)?,
        last_seen,
        idle_deadline: last_seen.saturating_add(number(idle)?),
        absolute_deadline: (!absolute.is_empty())
            .then(|| self::number(absolute))
            .transpose()?,
        label: utf8(label)?.strip_prefix('=').map(str::to_owned),
        device: match utf8(device)? {
            "" => None,
            json => Some(crate::device::from_stored(json)?),
        },
    })
}

/// `connections`' chunk: connection json values.
pub(super) fn connections(reply: &Value) -> Result<Vec<Connection>> {
    items(reply)?
        .iter()
        .map(|v| {
            serde_json::from_str(utf8(v)?)
                .map_err(|e| StoreError::corrupt(format!("unreadable connection: {e}")))
        })
        .collect()
}

fn session_ids(reply: &Value) -> Result<Vec<SessionId>> {
    items(reply)?.iter().map(session_id).collect()
}

fn items(v: &Value) -> Result<&[Value]> {
    match v {
        Value::Array(items) => Ok(items),
        _ => Err(StoreError::corrupt("expected an array reply")),
    }
}

fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone())
            .map_err(|_| StoreError::corrupt("a reply is not UTF-8")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        _ => Err(StoreError::corrupt("expected a string reply")),
    }
}

fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        other => i64::try_from(number(&text(other)?)?)
            .map_err(|_| StoreError::corrupt("a number out of range")),
    }
}

fn number(s: &str) -> Result<Millis> {
    s.parse()
        .map_err(|_| StoreError::corrupt(format!("expected a number, got {s:?}")))
}

fn session_id(v: &Value) -> Result<SessionId> {
    SessionId::parse(&text(v)?).ok_or_else(|| StoreError::corrupt("malformed session id"))
}

/// The element at `i`, or a corrupt-reply error.
fn at(items: &[Value], i: usize) -> Result<&Value> {
    items
        .get(i)
        .ok_or_else(|| StoreError::corrupt("a reply is too short"))
}

/// Key/value pairs from a flat array.
fn pairs(v: &Value) -> Result<Vec<(String, String)>> {
    items(v)?
        .chunks(2)
        .map(|pair| match pair {
            [k, v] => Ok((text(k)?, text(v)?)),
            _ => Err(StoreError::corrupt("odd number of fields")),
        })
        .collect()
}

/// The packed metadata field's parts, in the order of `PACKED` in
/// `lua/prelude.lua`, and then its texts, in the order of `TEXTS` there.
const PACKED: usize = 12;
const TEXTS: usize = 4;
const CREATED: usize = 0;
const SEEN: usize = 1;
const IDLE: usize = 2;
const ABS: usize = 3;
const TTG: usize = 4;
const ROT: usize = 5;
const RENEW: usize = 6;
const CUR: usize = 7;
const ADOPTED: usize = 8;
const RESEND: usize = 9;
const PREV: usize = 10;
const GRACE: usize = 11;
const UID: usize = 0;
const USER: usize = 1;
const LABEL: usize = 2;

fn utf8(v: &Value) -> Result<&str> {
    match v {
        Value::BulkString(bytes) => {
            std::str::from_utf8(bytes).map_err(|_| StoreError::corrupt("a reply is not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s),
        _ => Err(StoreError::corrupt("expected a string reply")),
    }
}

/// A session's whole hash (as `HGETALL` gives it), read in place: the
/// packed metadata split into its parts, the other fields left as they are.
struct Hash<'a> {
    fields: &'a [Value],
    meta: Meta<'a>,
}

/// The packed metadata field `m`, split into its parts: the numbers and
/// digests, and the texts (`uid`, `user`, `label`, `device`) where set.
struct Meta<'a> {
    parts: [&'a str; PACKED],
    texts: [Option<&'a str>; TEXTS],
}

impl<'a> Meta<'a> {
    /// `<parts>,<text lengths>,<texts>` (see `pack_meta` in the prelude).
    fn split(packed: &'a str) -> Result<Self> {
        let short = || StoreError::corrupt("short session metadata");
        let mut split = packed.splitn(PACKED + TEXTS + 1, ',');
        let mut parts = [""; PACKED];
        for part in parts.iter_mut() {
            *part = split.next().ok_or_else(short)?;
        }
        let mut lengths = [""; TEXTS];
        for length in lengths.iter_mut() {
            *length = split.next().ok_or_else(short)?;
        }
        let mut rest = split.next().ok_or_else(short)?;
        let mut texts = [None; TEXTS];
        for (text, length) in texts.iter_mut().zip(lengths) {
            if length.is_empty() {
                continue;
            }
            // Digits alone, as `pack_meta` writes them (`parse` would also
            // take a sign).
            let length: usize = length
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| length.parse().ok())
                .flatten()
                .ok_or_else(|| StoreError::corrupt("a text length in session metadata"))?;
            // `split_at_checked` also refuses a cut inside a character.
            let (head, tail) = rest
                .split_at_checked(length)
                .ok_or_else(|| StoreError::corrupt("a text cut short in session metadata"))?;
            *text = Some(head);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(StoreError::corrupt("trailing session metadata"));
        }
        Ok(Meta { parts, texts })
    }

    fn number(&self, i: usize) -> Result<Millis> {
        number(self.parts[i])
    }

    fn optional(&self, i: usize) -> Result<Option<Millis>> {
        let part = self.parts[i];
        (!part.is_empty()).then(|| number(part)).transpose()
    }

    /// When the session ends unless used again (`expires_at` in the prelude).
    fn deadline(&self) -> Result<Millis> {
        let idle = self.number(SEEN)?.saturating_add(self.number(IDLE)?);
        Ok(self.optional(ABS)?.map_or(idle, |abs| abs.min(idle)))
    }

    /// The session's token slots, as far as the hash holds them: the
    /// sealed replacement has a key of its own (`r:<id>`), so it is left
    /// out.
    fn slots(&self) -> Result<TokenSlots> {
        let previous = match self.parts[PREV] {
            "" => None,
            hash => Some(PreviousToken {
                hash: hash.to_owned(),
                grace_until: self.optional(GRACE)?.unwrap_or(0),
                sealed: None,
            }),
        };
        Ok(TokenSlots {
            current: self.parts[CUR].to_owned(),
            adopted: self.parts[ADOPTED] == "1",
            resend_until: self.optional(RESEND)?.unwrap_or(0),
            previous,
        })
    }

    /// Whether a use at `now` slides the idle deadline at a write's
    /// granularity, a tenth of the idle timeout (`save.lua`).
    fn write_refresh_due(&self, now: Millis) -> Result<bool> {
        Ok(now.saturating_sub(self.number(SEEN)?) >= self.number(IDLE)? / 10)
    }
}

impl<'a> Hash<'a> {
    /// `None` for an empty hash (no such session).
    fn read(flat: &'a Value) -> Result<Option<Self>> {
        let fields = items(flat)?;
        if fields.is_empty() {
            return Ok(None);
        }
        if fields.len() % 2 != 0 {
            return Err(StoreError::corrupt("odd number of fields"));
        }
        let mut packed = None;
        for pair in fields.chunks_exact(2) {
            if utf8(&pair[0])? == "m" {
                packed = Some(utf8(&pair[1])?);
                break;
            }
        }
        let packed = packed.ok_or_else(|| StoreError::corrupt("session metadata missing"))?;
        Ok(Some(Hash {
            fields,
            meta: Meta::split(packed)?,
        }))
    }

    fn number(&self, i: usize) -> Result<Millis> {
        self.meta.number(i)
    }

    fn optional(&self, i: usize) -> Result<Option<Millis>> {
        self.meta.optional(i)
    }

    /// The record, with the `seen` time the caller settled on. Only the
    /// strings the record keeps are allocated.
    fn record(&self, id: SessionId, last_seen: Millis) -> Result<SessionRecord> {
        let mut data = HashMap::with_capacity(self.fields.len() / 2 - 1);
        for pair in self.fields.chunks_exact(2) {
            // `m` is read already; fields of a later version are not this
            // one's business.
            if let Some(key) = utf8(&pair[0])?.strip_prefix("d:") {
                data.insert(key.to_owned(), text(&pair[1])?);
            }
        }
        let texts = &self.meta.texts;
        Ok(SessionRecord {
            id,
            created_at: self.number(CREATED)?,
            last_seen,
            idle_timeout: self.number(IDLE)?,
            absolute_deadline: self.optional(ABS)?,
            ttg: self.number(TTG)?,
            rotated_at: self.optional(ROT)?,
            renew_token: self.meta.parts[RENEW] == "1",
            label: texts[LABEL].map(str::to_owned),
            user: match (texts[UID], texts[USER]) {
                (Some(id), Some(json)) => Some(BoundUser {
                    id: id.to_owned(),
                    json: json.to_owned(),
                }),
                _ => None,
            },
            data,
        })
    }
}

/// A session record from its whole hash (as `HGETALL` gives it), with the
/// `seen` time the script settled on.
pub(super) fn record(id: SessionId, seen: &Value, flat: &Value) -> Result<SessionRecord> {
    let hash = Hash::read(flat)?.ok_or_else(|| StoreError::corrupt("session metadata missing"))?;
    hash.record(id, number(&text(seen)?)?)
}

/// What a save of data alone ([`ops::write_data`](super::ops::write_data))
/// found, from the session's metadata after it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// No session: nothing was saved.
    Gone,
    /// Saved into a live session.
    Done,
    /// Saved, but the session is past its deadline or due to slide it: the
    /// save function must still run, as a touch.
    Touch,
}

/// `write_data`: `{m or nil}`.
pub(super) fn written(reply: &Value, now: Millis) -> Result<Written> {
    let [meta] = items(reply)? else {
        return Err(StoreError::corrupt("expected one reply to a data write"));
    };
    if let Value::Nil = meta {
        return Ok(Written::Gone);
    }
    // Metadata this version cannot split (the layout before, or damage):
    // the save function decides, as a load's does.
    let Ok(meta) = Meta::split(utf8(meta)?) else {
        return Ok(Written::Touch);
    };
    if now >= meta.deadline()? || meta.write_refresh_due(now)? {
        Ok(Written::Touch)
    } else {
        Ok(Written::Done)
    }
}

/// A `load` decided from the whole hash of the session its token names
/// (`HGETALL`, see [`ops::Load`](super::ops::Load)), without the script.
/// `Some` when the script would change nothing: no such session, a token
/// the session's slots do not know, or its current token, already adopted,
/// on a live session whose idle deadline need not slide yet. `None` when
/// the script must decide: whatever makes the token rules
/// ([`TokenSlots::resolve`]) change the slots or name another state (a
/// token in its grace window, a replacement not adopted yet), a refresh
/// due, a session past its deadline (which the script ends), or metadata it
/// alone reads.
pub(super) fn settled(req: &Load, flat: &Value) -> Result<Option<Lookup>> {
    let hash = match Hash::read(flat) {
        Ok(Some(hash)) => hash,
        // Every token of a session starts with its id: no hash, no session.
        Ok(None) => return Ok(Some(Lookup::Missing)),
        // A hash without metadata: the leftover of a data write into a
        // session that had just ended (it expires within a millisecond), or
        // damage; the script decides.
        Err(_) => return Ok(None),
    };
    if req.now >= hash.meta.deadline()? {
        return Ok(None);
    }
    let slots = hash.meta.slots()?;
    let mut resolved = slots.clone();
    match resolved.resolve(&req.token.hash, req.now, req.cijs) {
        Resolution::Unknown => return Ok(Some(Lookup::Missing)),
        Resolution::Live(TokenState::Current) if resolved == slots => {}
        _ => return Ok(None),
    }
    let record = hash.record(req.token.session.clone(), hash.number(SEEN)?)?;
    if req
        .refresh_after
        .is_some_and(|after| record.refresh_due(req.now, after))
    {
        return Ok(None);
    }
    Ok(Some(Lookup::Found {
        record,
        token: TokenState::Current,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Tag;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn hash(fields: &[(&str, &str)]) -> Value {
        Value::Array(
            fields
                .iter()
                .flat_map(|(k, v)| [bulk(k), bulk(v)])
                .collect(),
        )
    }

    fn id() -> SessionId {
        SessionId::generate(&Tag::random())
    }

    const PACKED_OK: &str = "100,x,1800000,,150,,0,h,1,0,,,,,,,";

    /// Packed metadata: `parts` (the numbers and digests, comma-separated),
    /// then `texts` (uid, user, label, device) as `pack_meta` writes them.
    fn packed(parts: &str, texts: [Option<&str>; TEXTS]) -> String {
        let lengths: Vec<String> = texts
            .iter()
            .map(|t| t.map_or(String::new(), |t| t.len().to_string()))
            .collect();
        let joined: String = texts.iter().flatten().copied().collect();
        format!("{parts},{},{joined}", lengths.join(","))
    }

    #[test]
    fn a_record_is_read_from_its_hash() {
        let m = packed(
            "100,x,1800000,,150,,0,h,1,0,,",
            [
                Some("7"),
                Some(r#"{"id":"7","name":"a, b"}"#),
                Some("phone ☎"),
                None,
            ],
        );
        let record = record(
            id(),
            &bulk("170"),
            &hash(&[("m", &m), ("d:cart", "[1]"), ("later", "ignored")]),
        )
        .expect("a well-formed record");
        assert_eq!(record.created_at, 100);
        assert_eq!(record.last_seen, 170);
        assert_eq!(record.idle_timeout, 1_800_000);
        assert_eq!(record.absolute_deadline, None);
        assert_eq!(record.ttg, 150);
        assert_eq!(record.rotated_at, None);
        assert!(!record.renew_token);
        assert_eq!(record.label.as_deref(), Some("phone ☎"));
        let user = record.user.expect("a bound user");
        assert_eq!(user.id, "7");
        assert_eq!(user.json, r#"{"id":"7","name":"a, b"}"#);
        assert_eq!(record.data.get("cart").map(String::as_str), Some("[1]"));
    }

    /// A load of `digest` at `now`, sliding after 60 s (or silent).
    fn load_at(digest: &str, now: Millis, refresh_after: Option<Millis>) -> Load {
        let token = crate::token::Token::generate(&id());
        Load {
            token: crate::token::TokenDigest {
                hash: digest.to_owned(),
                ..token.digest()
            },
            now,
            refresh_after,
            cijs: 5_000,
        }
    }

    /// Packed metadata: created 0, seen `seen`, idle 30 min, current `h`
    /// (`adopted`), previous `p` in its grace window until 10 min.
    fn meta(seen: Millis, adopted: bool) -> String {
        let adopted = if adopted { "1" } else { "0" };
        format!("0,{seen},1800000,,0,,0,h,{adopted},0,p,600000,,,,,")
    }

    #[test]
    fn a_plain_read_is_decided_without_the_script_only_when_it_changes_nothing() {
        let live = hash(&[("m", &meta(1_000, true)), ("d:cart", "[1]")]);
        let found = settled(&load_at("h", 2_000, Some(60_000)), &live).unwrap();
        let Some(Lookup::Found { record, token }) = found else {
            panic!("the current, adopted token of a live session: {found:?}");
        };
        assert_eq!(token, TokenState::Current);
        assert_eq!(
            record.last_seen, 1_000,
            "a read inside the refresh interval writes nothing"
        );
        assert_eq!(record.data.get("cart").map(String::as_str), Some("[1]"));

        // No hash, or a token the session does not know: missing.
        for (digest, flat) in [("h", Value::Array(vec![])), ("other", live.clone())] {
            assert_eq!(
                settled(&load_at(digest, 2_000, Some(60_000)), &flat).unwrap(),
                Some(Lookup::Missing),
                "{digest}"
            );
        }

        // What the token rules or the deadlines would change: the script.
        let unadopted = hash(&[("m", &meta(1_000, false))]);
        let cases = [
            (
                "the previous token in its grace window",
                load_at("p", 2_000, Some(60_000)),
                &live,
            ),
            (
                "the previous token past it (stale)",
                load_at("p", 700_000, Some(60_000)),
                &live,
            ),
            (
                "a replacement presented first",
                load_at("h", 2_000, Some(60_000)),
                &unadopted,
            ),
            ("a refresh due", load_at("h", 62_000, Some(60_000)), &live),
            (
                "a session past its deadline",
                load_at("h", 1_802_000, None),
                &live,
            ),
        ];
        for (what, load, flat) in cases {
            assert_eq!(settled(&load, flat).unwrap(), None, "{what}");
        }
        // A silent read slides nothing, so it needs no script however old
        // the last refresh.
        assert!(matches!(
            settled(&load_at("h", 62_000, None), &live).unwrap(),
            Some(Lookup::Found { .. })
        ));
        // A hash without metadata (a data write's leftover): the script.
        let leftover = hash(&[("d:cart", "[2]")]);
        assert_eq!(
            settled(&load_at("h", 2_000, None), &leftover).unwrap(),
            None
        );
    }

    #[test]
    fn malformed_records_are_corrupt_not_panics() {
        let cases = [
            hash(&[("uid", "7")]),                                        // no metadata
            hash(&[("m", "1,2,3")]),                                      // short metadata
            hash(&[("m", "x,x,x,x,x,x,x,x,x,x,x,x,,,,,")]),               // not numbers
            hash(&[("m", "1,2,3,,4,,,h,1,,,,1,,,,")]),                    // a text missing
            hash(&[("m", "1,2,3,,4,,,h,1,,,,1,,,,7x")]),                  // trailing bytes
            hash(&[("m", "1,2,3,,4,,,h,1,,,,x,,,,7")]),                   // a bad length
            hash(&[("m", "1,2,3,,4,,,h,1,,,,+1,,,,7")]),                  // a signed length
            hash(&[("m", "1,2,3,,4,,,h,1,,,,1,,,,☎")]),                   // a cut character
            Value::Array(vec![bulk("m")]),                                // odd fields
            Value::Array(vec![Value::BulkString(vec![0xff]), bulk("1")]), // not UTF-8
            Value::Int(3),                                                // not an array
        ];
        for flat in cases {
            let err = record(id(), &bulk("1"), &flat).expect_err("a malformed record");
            assert_eq!(
                err.kind(),
                crate::store::StoreErrorKind::Corrupt,
                "{flat:?}"
            );
        }
        let err = record(id(), &Value::Nil, &hash(&[("m", PACKED_OK)])).unwrap_err();
        assert_eq!(err.kind(), crate::store::StoreErrorKind::Corrupt);
    }

    #[test]
    fn scalars_and_pairs_check_their_shape() {
        assert_eq!(text(&Value::Int(5)).unwrap(), "5");
        assert!(number("-1").is_err());
        assert!(session_id(&bulk("not an id")).is_err());
        assert!(at(&[], 0).is_err());
        assert_eq!(
            pairs(&hash(&[("a", "1")])).unwrap(),
            vec![("a".to_owned(), "1".to_owned())]
        );
        assert!(pairs(&Value::Array(vec![bulk("a")])).is_err());
    }
}
