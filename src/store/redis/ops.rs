//! Every script call, typed: one value per operation, holding what it
//! sends, and the type its reply decodes to.
//!
//! An operation says which key it runs on (`KEYS[1]`), and what follows the
//! two arguments every script takes first (`ARGV[1]` the base, `ARGV[2]` the
//! channel): the fields of its struct, in the order they are declared here,
//! from `ARGV[3]` on. That order is the one the header of the operation's
//! script (`lua/<name>.lua`) gives; the reply's layout is decoded in
//! [`reply`](super::reply), which is the only place that reads replies.

use redis::Value;

use super::keys::Keys;
use super::reply;
use super::scripts::{self, Call, Mode, Script};
use crate::clock::Millis;
use crate::store::{
    self, BoundUser, Connection, Delta, Fetched, LoginOutcome, Lookup, NewSession, Result, Revoke,
    Rotated, SessionInfo, StoreError,
};
use crate::token::SessionId;

/// One script call: its script, its key, its arguments and its reply.
pub(super) trait Op {
    /// What the reply decodes to.
    type Reply;
    /// The script it runs.
    const SCRIPT: &'static Script;
    /// The base of the key's tag (`ARGV[1]`) and the key (`KEYS[1]`).
    fn target(&self, keys: &Keys) -> (String, String);
    /// The arguments from `ARGV[3]` on.
    fn args(&self, call: &mut Call);
    /// Reads the reply.
    fn decode(&self, reply: &Value) -> Result<Self::Reply>;
}

/// The command for `op` in `mode`, with the events `channel`.
pub(super) fn call<O: Op>(op: &O, mode: Mode, keys: &Keys, channel: &str) -> Call {
    let (base, key) = op.target(keys);
    let mut call = Call::new(mode, O::SCRIPT, &key);
    call.arg(base).arg(channel);
    op.args(&mut call);
    call
}

/// `load.lua`: ARGV 3 digest, 4 now, 5 refresh after ('' for a silent
/// read), 6 CIJS. Sent only when the plain `HGETALL` before it cannot
/// decide (see `RedisStore::load` and [`reply::settled`]).
pub(super) struct Load<'a>(pub &'a store::Load);

impl Op for Load<'_> {
    type Reply = Lookup;
    const SCRIPT: &'static Script = &scripts::LOAD;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.token(&self.0.token)
    }
    fn args(&self, call: &mut Call) {
        let req = self.0;
        call.arg(&req.token.hash)
            .arg(req.now)
            .arg(optional(req.refresh_after))
            .arg(req.cijs);
    }
    fn decode(&self, reply: &Value) -> Result<Lookup> {
        reply::lookup(reply)
    }
}

/// `create.lua`: ARGV 3.. the session (see [`push_new_session`]), then the
/// data pairs (see [`push_pairs`]).
pub(super) struct Create<'a>(pub &'a NewSession);

impl Op for Create<'_> {
    type Reply = ();
    const SCRIPT: &'static Script = &scripts::CREATE;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.session(&self.0.id)
    }
    fn args(&self, call: &mut Call) {
        push_new_session(call, self.0);
        push_pairs(call, &self.0.data);
    }
    fn decode(&self, reply: &Value) -> Result<()> {
        reply::flag(reply).map(drop)
    }
}

/// `save.lua`: ARGV 3 id, 4 now, 5.. the delta (see [`push_delta`]).
pub(super) struct Save<'a>(pub &'a store::Save);

impl Op for Save<'_> {
    type Reply = bool;
    const SCRIPT: &'static Script = &scripts::SAVE;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.session(&self.0.id)
    }
    fn args(&self, call: &mut Call) {
        call.arg(self.0.id.as_str()).arg(self.0.now);
        push_delta(call, &self.0.delta);
    }
    fn decode(&self, reply: &Value) -> Result<bool> {
        reply::flag(reply)
    }
}

/// Whether a save is of data alone (keys set or removed, nothing else),
/// which [`write_data`] can do without the save function.
pub(super) fn is_data_only(delta: &store::Delta) -> bool {
    !delta.clear
        && delta.idle_timeout.is_none()
        && delta.label.is_none()
        && !(delta.set.is_empty() && delta.remove.is_empty())
}

/// A save of data alone as one transaction, the common write, without the
/// cost of a function call (several times that of the commands):
///
/// ```text
/// MULTI
/// HDEL <session> d:<removed>..     (if any)
/// HSET <session> d:<key> <value>.. (if any)
/// PEXPIRE <session> 1 NX
/// HGET <session> m
/// EXEC
/// ```
///
/// Every live session hash has a TTL, so `PEXPIRE .. NX` changes nothing on
/// one. If the session was gone, `HSET` made a hash of data alone: `NX`
/// gives it a millisecond to live, and without `m` it is no session to any
/// reader meanwhile, so a save never brings a session back. The reply is
/// the metadata after the change, read by [`reply::written`]: none if the
/// session was gone; if it is past its deadline or due to slide it, the
/// save function finishes the job as a touch.
pub(super) fn write_data(key: &str, delta: &store::Delta) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    if !delta.remove.is_empty() {
        let cmd = pipe.cmd("HDEL").arg(key);
        for k in &delta.remove {
            cmd.arg(format!("d:{k}"));
        }
        cmd.ignore();
    }
    if !delta.set.is_empty() {
        let cmd = pipe.cmd("HSET").arg(key);
        for (k, v) in &delta.set {
            cmd.arg(format!("d:{k}")).arg(v);
        }
        cmd.ignore();
    }
    pipe.cmd("PEXPIRE").arg(key).arg(1).arg("NX").ignore();
    pipe.cmd("HGET").arg(key).arg("m");
    pipe
}

/// `rotate.lua`: ARGV 3 id, 4 old digest, 5 new digest, 6 new sealed under
/// old, 7 now, 8 OJS, 9 CIJS.
pub(super) struct Rotate<'a>(pub &'a store::Rotation);

impl Op for Rotate<'_> {
    type Reply = Rotated;
    const SCRIPT: &'static Script = &scripts::ROTATE;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.session(&self.0.id)
    }
    fn args(&self, call: &mut Call) {
        let r = self.0;
        call.arg(r.id.as_str())
            .arg(&r.old.hash)
            .arg(&r.new.hash)
            .arg(&r.sealed)
            .arg(r.now)
            .arg(r.ojs)
            .arg(r.cijs);
    }
    fn decode(&self, reply: &Value) -> Result<Rotated> {
        reply::rotated(reply)
    }
}

/// `regenerate.lua`: ARGV 3 id, 4 new digest, 5 now, 6.. the delta.
pub(super) struct Regenerate<'a>(pub &'a store::Regenerate);

impl Op for Regenerate<'_> {
    type Reply = bool;
    const SCRIPT: &'static Script = &scripts::REGENERATE;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.session(&self.0.id)
    }
    fn args(&self, call: &mut Call) {
        let req = self.0;
        call.arg(req.id.as_str()).arg(&req.token.hash).arg(req.now);
        push_delta(call, &req.delta);
    }
    fn decode(&self, reply: &Value) -> Result<bool> {
        reply::flag(reply)
    }
}

/// `login.lua`: ARGV 3.. the session, then the most sessions (0: no
/// limit), the base of the session it replaces and its id (both '' for
/// none), the carried data pairs, the delta.
pub(super) struct Login<'a> {
    pub session: &'a NewSession,
    /// Never 0 when there is a limit: a limit keeps the new session.
    pub max_sessions: usize,
    /// The session it replaces, with its base, when one script can end it.
    pub from: Option<(String, &'a SessionId)>,
    /// Data read beforehand from a session in another slot.
    pub carried: &'a [(String, String)],
    pub delta: &'a Delta,
}

impl Op for Login<'_> {
    type Reply = LoginOutcome;
    const SCRIPT: &'static Script = &scripts::LOGIN;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.session(&self.session.id)
    }
    fn args(&self, call: &mut Call) {
        push_new_session(call, self.session);
        let (base, id) = self
            .from
            .as_ref()
            .map_or(("", ""), |(base, id)| (base.as_str(), id.as_str()));
        call.arg(self.max_sessions).arg(base).arg(id);
        push_pairs(call, self.carried);
        push_delta(call, self.delta);
    }
    fn decode(&self, reply: &Value) -> Result<LoginOutcome> {
        reply::login(reply)
    }
}

/// `destroy.lua`: ARGV 3 id, 4 reason (its serde name), 5 now.
pub(super) struct Destroy<'a>(pub &'a store::Destroy);

impl Op for Destroy<'_> {
    type Reply = bool;
    const SCRIPT: &'static Script = &scripts::DESTROY;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.session(&self.0.id)
    }
    fn args(&self, call: &mut Call) {
        let req = self.0;
        call.arg(req.id.as_str())
            .arg(req.reason.name())
            .arg(req.now);
    }
    fn decode(&self, reply: &Value) -> Result<bool> {
        reply::flag(reply)
    }
}

/// One chunk of a scan of a user's index: the next cursor ('0': done) and
/// what the chunk gave.
pub(super) struct Chunk<T> {
    pub next: String,
    pub items: T,
}

/// `list.lua`: ARGV 3 user id, 4 now, 5 cursor.
pub(super) struct List<'a> {
    pub user_id: &'a str,
    pub now: Millis,
    pub cursor: String,
}

impl Op for List<'_> {
    type Reply = Chunk<Vec<SessionInfo>>;
    const SCRIPT: &'static Script = &scripts::LIST;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.user(self.user_id)
    }
    fn args(&self, call: &mut Call) {
        call.arg(self.user_id).arg(self.now).arg(&self.cursor);
    }
    fn decode(&self, reply: &Value) -> Result<Self::Reply> {
        reply::chunk(reply, reply::session_infos)
    }
}

/// `revoke.lua`: ARGV 3 user id, 4 now, 5 'one' | 'all' | 'except', 6 the
/// id (or '').
pub(super) struct RevokeSome<'a> {
    pub user_id: &'a str,
    pub now: Millis,
    pub scope: &'a Revoke,
}

impl Op for RevokeSome<'_> {
    /// The ids revoked, and how many entries are left to look at.
    type Reply = (Vec<SessionId>, usize);
    const SCRIPT: &'static Script = &scripts::REVOKE;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.user(self.user_id)
    }
    fn args(&self, call: &mut Call) {
        let (mode, target) = match self.scope {
            Revoke::One(id) => ("one", id.as_str()),
            Revoke::All => ("all", ""),
            Revoke::AllExcept(id) => ("except", id.as_str()),
        };
        call.arg(self.user_id).arg(self.now).arg(mode).arg(target);
    }
    fn decode(&self, reply: &Value) -> Result<Self::Reply> {
        reply::revoked(reply)
    }
}

/// `sync_user.lua`: ARGV 3 user id, 4 now, 5 user json, 6 cursor.
pub(super) struct SyncUser<'a> {
    pub user: &'a BoundUser,
    pub now: Millis,
    pub cursor: String,
}

impl Op for SyncUser<'_> {
    /// How many sessions the chunk updated.
    type Reply = Chunk<usize>;
    const SCRIPT: &'static Script = &scripts::SYNC_USER;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.user(&self.user.id)
    }
    fn args(&self, call: &mut Call) {
        call.arg(&self.user.id)
            .arg(self.now)
            .arg(&self.user.json)
            .arg(&self.cursor);
    }
    fn decode(&self, reply: &Value) -> Result<Self::Reply> {
        reply::chunk(reply, reply::count)
    }
}

/// `connect.lua`: ARGV 3 id, 4 now, 5 connection id, 6 `<lease until>|<connection json>`.
pub(super) struct Connect<'a> {
    pub req: &'a store::Connect,
    entry: String,
}

impl<'a> Connect<'a> {
    pub(super) fn new(req: &'a store::Connect) -> Result<Self> {
        let json = serde_json::to_string(&req.connection)
            .map_err(|e| StoreError::corrupt(format!("connection not serializable: {e}")))?;
        Ok(Connect {
            req,
            entry: format!("{}|{json}", req.lease_until),
        })
    }
}

impl Op for Connect<'_> {
    type Reply = bool;
    const SCRIPT: &'static Script = &scripts::CONNECT;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.session(&self.req.connection.session)
    }
    fn args(&self, call: &mut Call) {
        let conn = &self.req.connection;
        call.arg(conn.session.as_str())
            .arg(self.req.now)
            .arg(&conn.id)
            .arg(&self.entry);
    }
    fn decode(&self, reply: &Value) -> Result<bool> {
        reply::flag(reply)
    }
}

/// `fetch.lua`: ARGV 3 id, 4 now, 5 known token digest or '', 6 connection
/// id or '', 7 its lease until (0 for none).
pub(super) struct Fetch<'a>(pub &'a store::Fetch);

impl Op for Fetch<'_> {
    type Reply = Option<Fetched>;
    const SCRIPT: &'static Script = &scripts::FETCH;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.session(&self.0.id)
    }
    fn args(&self, call: &mut Call) {
        let f = self.0;
        let (conn, until) = f
            .lease
            .as_ref()
            .map_or(("", 0), |(c, until)| (c.as_str(), *until));
        call.arg(f.id.as_str())
            .arg(f.now)
            .arg(f.known.as_ref().map_or("", |k| k.hash.as_str()))
            .arg(conn)
            .arg(until);
    }
    fn decode(&self, reply: &Value) -> Result<Self::Reply> {
        reply::fetched(&self.0.id, reply)
    }
}

/// `connections.lua`: ARGV 3 user id, 4 now, 5 cursor.
pub(super) struct Connections<'a> {
    pub user_id: &'a str,
    pub now: Millis,
    pub cursor: String,
}

impl Op for Connections<'_> {
    type Reply = Chunk<Vec<Connection>>;
    const SCRIPT: &'static Script = &scripts::CONNECTIONS;
    fn target(&self, keys: &Keys) -> (String, String) {
        keys.user(self.user_id)
    }
    fn args(&self, call: &mut Call) {
        call.arg(self.user_id).arg(self.now).arg(&self.cursor);
    }
    fn decode(&self, reply: &Value) -> Result<Self::Reply> {
        reply::chunk(reply, reply::connections)
    }
}

/// A session to create, in the layout `new_session` in the prelude reads:
/// id, token digest, now, idle timeout, absolute deadline or '', `=user id`
/// or '', user json or '', `=label` or '', `=device json` or ''.
fn push_new_session(call: &mut Call, new: &NewSession) {
    let user = new.user.as_ref();
    call.arg(new.id.as_str())
        .arg(&new.token.hash)
        .arg(new.now)
        .arg(new.idle_timeout)
        .arg(optional(new.absolute_deadline))
        .arg(present(user.map(|u| u.id.as_str())))
        .arg(user.map_or("", |u| u.json.as_str()))
        .arg(present(new.label.as_deref()))
        .arg(present(
            crate::device::stored(new.device.as_ref()).as_deref(),
        ));
}

/// A delta, in the layout `read_delta` in the prelude reads: clear (0/1),
/// idle timeout or '', `=label` or '', the number of removed keys and the
/// keys, the number of set keys and the key/value pairs.
fn push_delta(call: &mut Call, delta: &Delta) {
    call.arg(if delta.clear { "1" } else { "0" })
        .arg(optional(delta.idle_timeout))
        .arg(present(delta.label.as_deref()))
        .arg(delta.remove.len());
    for key in &delta.remove {
        call.arg(key);
    }
    push_pairs(call, &delta.set);
}

/// Key/value pairs, preceded by their number (`read_pairs` in the prelude).
fn push_pairs(call: &mut Call, pairs: &[(String, String)]) {
    call.arg(pairs.len());
    for (key, value) in pairs {
        call.arg(key).arg(value);
    }
}

/// An optional number as scripts take it: empty for none.
fn optional(n: Option<Millis>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

/// An optional text as scripts take and give it: `=` and the text, or empty
/// for none, so that an empty text stays distinguishable from none.
fn present(text: Option<&str>) -> String {
    text.map(|t| format!("={t}")).unwrap_or_default()
}
