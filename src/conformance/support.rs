//! What the checks share: the settings every check runs with, and helpers
//! that drive a store and fail a check with a message saying what was
//! expected and what happened.

pub(super) use std::collections::{HashMap, HashSet};
pub(super) use std::time::Duration;

pub(super) use futures_util::future::join_all;
pub(super) use tokio::sync::broadcast::{self, error::RecvError};
pub(super) use tokio::task::JoinHandle;

pub(super) use crate::clock::{Clock, Millis, SystemClock};
pub(super) use crate::store::{
    BoundUser, Connect, Connection, Delta, Destroy, Disconnect, EndReason, Fetch, Fetched,
    ListConnections, ListSessions, Load, Login, Lookup, NewSession, Regenerate, Revoke,
    RevokeSessions, Rotated, Rotation, Save, SessionEnded, SessionInfo, SessionRecord,
    SessionStore, StoreErrorKind, SyncUser, TokenState,
};
pub(super) use crate::token::{random_id, seal, unseal, SessionId, Tag, Token};

pub(super) const SECOND: Millis = 1_000;
pub(super) const MINUTE: Millis = 60 * SECOND;
pub(super) const HOUR: Millis = 60 * MINUTE;
/// The idle timeout of the sessions the checks start.
pub(super) const IDLE: Millis = 30 * MINUTE;
/// `Load::refresh_after` of ordinary loads.
pub(super) const REFRESH: Millis = MINUTE;
/// The grace window of old tokens.
pub(super) const OJS: Millis = 10 * MINUTE;
/// The lifetime of an unadopted replacement (well under half of OJS).
pub(super) const CIJS: Millis = 2 * MINUTE;
/// A connection lease.
pub(super) const LEASE: Millis = 90 * SECOND;
/// How long to wait for an event.
pub(super) const EVENT_WAIT: Duration = Duration::from_secs(2);

pub(super) fn start() -> Millis {
    SystemClock.now()
}

/// Unwraps a store result: an error is a failure of the check.
#[track_caller]
pub(super) fn ok<T>(result: crate::store::Result<T>, call: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{call}: the store returned an error: {err}"),
    }
}

pub(super) fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn data(items: &[(&str, &str)]) -> HashMap<String, String> {
    pairs(items).into_iter().collect()
}

pub(super) fn set(items: &[(&str, &str)]) -> Delta {
    Delta {
        set: pairs(items),
        ..Delta::default()
    }
}

/// A user id no other check (or earlier run on a shared backend) uses.
pub(super) fn unique_user(name: &str) -> String {
    format!("{name}-{}", random_id())
}

pub(super) fn bound(user: &str, version: u32) -> BoundUser {
    BoundUser {
        id: user.to_owned(),
        json: format!(r#"{{"id":"{user}","version":{version}}}"#),
    }
}

/// An anonymous session to create (random tag) and its token.
pub(super) fn anonymous(now: Millis, items: &[(&str, &str)]) -> (NewSession, Token) {
    let token = Token::generate(&SessionId::generate(&Tag::random()));
    let new = NewSession {
        device: None,
        id: token.session_id(),
        token: token.digest(),
        now,
        idle_timeout: IDLE,
        absolute_deadline: None,
        user: None,
        label: None,
        data: pairs(items),
    };
    (new, token)
}

/// Creates an anonymous session.
pub(super) async fn create<S: SessionStore>(
    store: &S,
    now: Millis,
    items: &[(&str, &str)],
) -> (SessionId, Token) {
    let (new, token) = anonymous(now, items);
    ok(store.create(&new).await, "create");
    (new.id, token)
}

/// A login of `user` with no previous session, no delta and no limit, as
/// the layer builds it: id and token both carry the user's tag.
pub(super) fn login_request(user: &str, now: Millis) -> (Login, Token) {
    let tag = Tag::for_user(user);
    let token = Token::generate(&SessionId::generate(&tag));
    let session = NewSession {
        device: None,
        id: token.session_id(),
        token: token.digest(),
        now,
        idle_timeout: IDLE,
        absolute_deadline: None,
        user: Some(bound(user, 1)),
        label: None,
        data: Vec::new(),
    };
    let login = Login {
        from: None,
        delta: Delta::default(),
        session,
        max_sessions: None,
    };
    (login, token)
}

/// A logged-in session.
pub(super) struct Member {
    pub(super) id: SessionId,
    pub(super) token: Token,
}

pub(super) async fn log_in<S: SessionStore>(store: &S, user: &str, now: Millis) -> Member {
    let (login, token) = login_request(user, now);
    submit(store, login, token).await
}

pub(super) async fn submit<S: SessionStore>(store: &S, login: Login, token: Token) -> Member {
    let outcome = ok(store.login(&login).await, "login");
    assert!(
        outcome.evicted.is_empty() || login.max_sessions.is_some(),
        "login without max_sessions evicted {:?}",
        outcome.evicted
    );
    Member {
        id: login.session.id,
        token,
    }
}

/// An ordinary load of `token` at `now`.
pub(super) fn options(token: &Token, now: Millis) -> Load {
    Load {
        token: token.digest(),
        now,
        refresh_after: Some(REFRESH),
        cijs: CIJS,
    }
}

/// An ordinary load.
pub(super) async fn load<S: SessionStore>(store: &S, token: &Token, now: Millis) -> Lookup {
    ok(store.load(&options(token, now)).await, "load")
}

/// A load that never slides the idle deadline, to probe a deadline without
/// moving it.
pub(super) async fn probe<S: SessionStore>(store: &S, token: &Token, now: Millis) -> Lookup {
    let load = Load {
        refresh_after: None,
        ..options(token, now)
    };
    ok(store.load(&load).await, "load")
}

pub(super) async fn save<S: SessionStore>(
    store: &S,
    id: &SessionId,
    delta: &Delta,
    now: Millis,
) -> bool {
    ok(
        store
            .save(&Save {
                id: id.clone(),
                delta: delta.clone(),
                now,
            })
            .await,
        "save",
    )
}

/// Revokes `scope` among `user`'s sessions; the ids revoked.
pub(super) async fn revoke<S: SessionStore>(
    store: &S,
    user: &str,
    scope: Revoke,
    now: Millis,
) -> Vec<SessionId> {
    ok(
        store
            .revoke(&RevokeSessions {
                user_id: user.to_owned(),
                scope,
                now,
            })
            .await,
        "revoke",
    )
}

pub(super) async fn list<S: SessionStore>(store: &S, user: &str, now: Millis) -> Vec<SessionInfo> {
    ok(
        store
            .list_sessions(&ListSessions {
                user_id: user.to_owned(),
                now,
            })
            .await,
        "list_sessions",
    )
}

pub(super) async fn listed_ids<S: SessionStore>(
    store: &S,
    user: &str,
    now: Millis,
) -> Vec<SessionId> {
    list(store, user, now)
        .await
        .into_iter()
        .map(|info| info.id)
        .collect()
}

pub(super) async fn connections<S: SessionStore>(
    store: &S,
    user: &str,
    now: Millis,
) -> Vec<Connection> {
    let mut list = ok(
        store
            .list_connections(&ListConnections {
                user_id: user.to_owned(),
                now,
            })
            .await,
        "list_connections",
    );
    list.sort_by(|a, b| a.id.cmp(&b.id));
    list
}

pub(super) async fn fetch<S: SessionStore>(
    store: &S,
    id: &SessionId,
    known: Option<&Token>,
    lease: Option<(&Connection, Millis)>,
    now: Millis,
) -> Option<Fetched> {
    let fetch = Fetch {
        id: id.clone(),
        known: known.map(Token::digest),
        lease: lease.map(|(conn, until)| (conn.id.clone(), until)),
        now,
    };
    ok(store.fetch(&fetch).await, "fetch")
}

pub(super) fn connection(session: &SessionId, node: &str, now: Millis) -> Connection {
    Connection {
        id: random_id(),
        node: node.to_owned(),
        session: session.clone(),
        opened_at: now,
    }
}

pub(super) async fn connect<S: SessionStore>(
    store: &S,
    conn: &Connection,
    until: Millis,
    now: Millis,
) -> bool {
    ok(
        store
            .connect(&Connect {
                connection: conn.clone(),
                lease_until: until,
                now,
            })
            .await,
        "connect",
    )
}

pub(super) fn sorted(mut conns: Vec<Connection>) -> Vec<Connection> {
    conns.sort_by(|a, b| a.id.cmp(&b.id));
    conns
}

/// A rotation of `old` to a fresh candidate, as the layer builds it.
pub(super) fn rotation(id: &SessionId, old: &Token, now: Millis) -> (Rotation, Token) {
    let new = Token::generate(&old.session_id());
    let rotation = Rotation {
        id: id.clone(),
        old: old.digest(),
        new: new.digest(),
        sealed: seal(old, &new),
        now,
        ojs: OJS,
        cijs: CIJS,
    };
    (rotation, new)
}

/// Rotates `old` and expects the candidate to be installed.
pub(super) async fn rotate_installed<S: SessionStore>(
    store: &S,
    id: &SessionId,
    old: &Token,
    now: Millis,
    what: &str,
) -> Token {
    let (rotation, new) = rotation(id, old, now);
    match ok(store.rotate(&rotation).await, "rotate") {
        Rotated::Installed => new,
        other => panic!("{what}: expected Rotated::Installed, got {other:?}"),
    }
}

pub(super) fn describe(lookup: &Lookup) -> String {
    match lookup {
        Lookup::Missing => "Missing".to_owned(),
        Lookup::Stale(id) => format!("Stale({id})"),
        Lookup::Found {
            record,
            token: TokenState::Current,
        } => format!("Found {{ session {}, token: Current }}", record.id),
        Lookup::Found {
            record,
            token: TokenState::Replaced { .. },
        } => format!(
            "Found {{ session {}, token: Replaced {{ .. }} }}",
            record.id
        ),
        Lookup::Found { record, token } => {
            format!("Found {{ session {}, token: {token:?} }}", record.id)
        }
    }
}

pub(super) fn expect_current(lookup: Lookup, what: &str) -> SessionRecord {
    match lookup {
        Lookup::Found {
            record,
            token: TokenState::Current,
        } => record,
        other => panic!(
            "{what}: expected Found {{ token: Current }}, got {}",
            describe(&other)
        ),
    }
}

/// Expects a grace lookup (`Replaced`, `Superseded` or `Lapsed`): the
/// record and the sealed replacement if there is one to hand out.
pub(super) fn expect_grace(lookup: Lookup, what: &str) -> (SessionRecord, Option<String>) {
    match lookup {
        Lookup::Found {
            record,
            token: TokenState::Replaced { sealed },
        } => (record, Some(sealed)),
        Lookup::Found {
            record,
            token: TokenState::Superseded | TokenState::Lapsed,
        } => (record, None),
        other => panic!(
            "{what}: expected Found {{ token: Replaced, Superseded or Lapsed }}, got {}",
            describe(&other)
        ),
    }
}

/// Expects a grace lookup whose replacement the client already presented.
pub(super) fn expect_superseded(lookup: Lookup, what: &str) -> SessionRecord {
    match lookup {
        Lookup::Found {
            record,
            token: TokenState::Superseded,
        } => record,
        other => panic!(
            "{what}: expected Found {{ token: Superseded }}, got {}",
            describe(&other)
        ),
    }
}

/// Expects a grace lookup whose replacement is no longer handed out.
pub(super) fn expect_lapsed(lookup: Lookup, what: &str) -> SessionRecord {
    match lookup {
        Lookup::Found {
            record,
            token: TokenState::Lapsed,
        } => record,
        other => panic!(
            "{what}: expected Found {{ token: Lapsed }}, got {}",
            describe(&other)
        ),
    }
}

/// Expects a grace lookup whose replacement opens (with `old`) to `new`.
pub(super) fn expect_replacement(
    lookup: Lookup,
    old: &Token,
    new: &Token,
    what: &str,
) -> SessionRecord {
    let (record, replacement) = expect_grace(lookup, what);
    match replacement {
        Some(sealed) => opens_to(old, &sealed, new, what),
        None => panic!(
            "{what}: expected Found {{ token: Replaced {{ .. }} }}, got a grace lookup with nothing to hand out"
        ),
    }
    record
}

pub(super) fn expect_missing(lookup: Lookup, what: &str) {
    if lookup != Lookup::Missing {
        panic!("{what}: expected Missing, got {}", describe(&lookup));
    }
}

pub(super) fn expect_stale(lookup: Lookup, what: &str) -> SessionId {
    match lookup {
        Lookup::Stale(id) => id,
        other => panic!("{what}: expected Stale(id), got {}", describe(&other)),
    }
}

/// Checks that `sealed` opens with `old` to `expected`.
pub(super) fn opens_to(old: &Token, sealed: &str, expected: &Token, what: &str) {
    match unseal(old, sealed) {
        Some(token) if &token == expected => {}
        Some(token) => panic!(
            "{what}: the sealed replacement opens (with the old token) to {token:?}, expected {expected:?}"
        ),
        None => panic!("{what}: the sealed replacement is not something `seal` produced"),
    }
}

/// Waits for a `SessionEnded` event with `reason` for each of `ids`,
/// skipping unrelated events.
pub(super) async fn expect_events(
    events: &mut broadcast::Receiver<SessionEnded>,
    ids: &[SessionId],
    reason: EndReason,
    what: &str,
) {
    let mut waiting: HashSet<SessionId> = ids.iter().cloned().collect();
    let wait = async {
        while !waiting.is_empty() {
            match events.recv().await {
                Ok(event) => {
                    if waiting.contains(&event.id) {
                        if event.reason != reason {
                            return Err(format!(
                                "{what}: session {} ended with reason {:?}, expected {reason:?}",
                                event.id, event.reason
                            ));
                        }
                        waiting.remove(&event.id);
                    }
                }
                // Missed events might have been ours: keep waiting, the
                // timeout reports it if they were.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err(format!("{what}: the event feed closed")),
            }
        }
        Ok(())
    };
    let result = tokio::time::timeout(EVENT_WAIT, wait).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(message)) => panic!("{message}"),
        Err(_) => panic!(
            "{what}: expected a SessionEnded {{ reason: {reason:?} }} event for {waiting:?} \
             within {EVENT_WAIT:?}, none came"
        ),
    }
}

/// Awaits spawned tasks; a task that panicked fails the check with its
/// own message.
pub(super) async fn join<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for result in join_all(tasks).await {
        match result {
            Ok(value) => out.push(value),
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("a task of the check did not finish: {err}"),
        }
    }
    out
}
