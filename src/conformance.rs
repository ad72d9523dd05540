//! The store conformance suite: checks that a [`SessionStore`] behaves the
//! way the layer relies on (feature `conformance`).
//!
//! Every check is an async function taking a fresh, empty store. It drives
//! the store through the [`SessionStore`] trait only, and panics with a
//! message saying what was expected and what happened when the store falls
//! short. [`run_all`] runs every check, each on a new store from a factory;
//! [`conformance_tests!`](crate::conformance_tests) generates one test per
//! check so that a failure names its check.
//!
//! ```no_run
//! // tests/conformance.rs in the crate of your store.
//! use sessionkit::MemoryStore;
//!
//! /// A new, empty store for each check: for a shared backend, give each one
//! /// its own key prefix.
//! async fn fresh_store() -> MemoryStore {
//!     MemoryStore::new() // your store here
//! }
//!
//! // One `#[tokio::test]` per check, named after it. The attribute is
//! // optional (`#[tokio::test]` when left out).
//! sessionkit::conformance_tests!(
//!     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!     fresh_store
//! );
//!
//! // Or every check in one test, with a report of all the failures.
//! #[tokio::test(flavor = "multi_thread")]
//! async fn conforms() {
//!     sessionkit::conformance::run_all(fresh_store).await;
//! }
//! # fn main() {}
//! ```
//!
//! # Time
//!
//! Stores take the current time from the caller. Each check starts at the
//! wall-clock time ([`SystemClock`]) and only ever moves time *forward*,
//! logically, in steps of milliseconds to hours: nothing sleeps for a
//! deadline. A store may therefore give its records real TTLs counted from
//! the `now` it is given (that time is never earlier than the real one), but
//! must decide liveness with the `now` it is given, not with its own clock.
//! Boundaries are exact: a deadline `d` means live at `d - 1`, gone at `d`.
//!
//! # Events
//!
//! Checks that expect a [`SessionEnded`] event subscribe before acting and
//! wait up to two seconds for it, skipping unrelated events, so a store may
//! deliver events asynchronously (pub/sub).
//!
//! # Runtime
//!
//! Checks spawn Tokio tasks for their concurrent parts, so they must run
//! inside a Tokio runtime; a multi-threaded one exercises real parallelism.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::FutureExt;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use crate::clock::{Clock, Millis, SystemClock};
use crate::store::{
    BoundUser, Connection, Delta, EndReason, Fetch, Fetched, LoadOptions, Login, Lookup,
    NewSession, Revoke, Rotated, Rotation, SessionEnded, SessionInfo, SessionRecord, SessionStore,
    TokenState,
};
use crate::token::{random_id, seal, unseal, SessionId, Tag, Token};

#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance {
    // The one list of checks, handed to the arm named by the mode.
    (@with $($mode:tt)*) => {
        $crate::__sessionkit_conformance! { @list [$($mode)*]
            create_and_load,
            load_unknown_token,
            load_slides_idle_deadline,
            idle_deadline_expires,
            absolute_deadline_expires,
            save_applies_delta,
            saves_of_different_keys_merge,
            save_after_destroy_changes_nothing,
            save_after_expiry_changes_nothing,
            rotate_installs_replacement,
            grace_token_gets_sealed_replacement,
            old_token_is_stale_after_grace,
            rotate_is_single_flight,
            unadopted_replacement_lapses,
            handing_out_replacement_extends_lapse,
            lapsed_replacement_is_replaced,
            abandoned_rotation_ends_session,
            regenerate_replaces_every_token,
            login_carries_data_over,
            login_without_previous_session,
            login_applies_delta_settings,
            login_enforces_max_sessions,
            destroy_ends_session,
            list_sessions_reports_metadata,
            list_sessions_prunes_expired,
            user_index_empties_after_expiry,
            revoke_scopes,
            revoke_ignores_other_users,
            concurrent_logins_and_revokes_stay_consistent,
            sync_user_updates_live_sessions,
            connect_registers_connection,
            connection_lease_runs_out,
            fetch_refreshes_session_and_lease,
            fetch_follows_rotation,
            fetch_withholds_lapsed_replacement,
            live_connection_keeps_replacement,
            disconnect_removes_connection,
            destroy_removes_connections,
            destroy_of_expired_session_is_false,
            longest_timeouts_stay_exact,
            empty_label_and_user_id_are_kept,
            user_sessions_must_carry_the_user_tag,
            a_limit_of_zero_keeps_the_new_session,
            fetch_gone_session,
            stale_token_leaves_session_live,
        }
    };
    (@list [names] $($check:ident),* $(,)?) => {
        &[$(stringify!($check)),*]
    };
    (@list [run $make:ident $failures:ident] $($check:ident),* $(,)?) => {
        $(
            if let Err(message) = outcome($check($make().await)).await {
                $failures.push((stringify!($check), message));
            }
        )*
    };
    (@list [tests # $attr:tt $make:expr] $($check:ident),* $(,)?) => {
        $(
            #[doc = concat!("Conformance check `", stringify!($check), "`.")]
            # $attr
            async fn $check() {
                let make = $make;
                $crate::conformance::$check(make().await).await;
            }
        )*
    };
}

/// Generates one test per conformance check, each named after its check
/// and run on a fresh store (feature `conformance`).
///
/// It takes an optional test attribute (default `#[tokio::test]`, so the
/// calling crate needs `tokio` with the `macros` and `rt` features) and a
/// store factory: anything callable as `make().await` that yields a new,
/// empty store, such as an `async fn` or `|| async { .. }`.
///
/// ```no_run
/// sessionkit::conformance_tests!(
///     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
///     || async { sessionkit::MemoryStore::new() }
/// );
/// # fn main() {}
/// ```
///
/// See the [`conformance`](crate::conformance) module for what is checked.
#[macro_export]
macro_rules! conformance_tests {
    (# $attr:tt $make:expr $(,)?) => {
        $crate::__sessionkit_conformance! { @with tests # $attr $make }
    };
    ($make:expr $(,)?) => {
        $crate::conformance_tests!(
            #[::tokio::test]
            $make
        );
    };
}

/// The name of every check, in the order [`run_all`] runs them. Each is a
/// function of this module taking a fresh store.
pub const CHECKS: &[&str] = crate::__sessionkit_conformance! { @with names };

/// Runs every check, each on a fresh store from `make`, and panics at the
/// end with the list of the checks that failed (each failure's own panic
/// message is printed as it happens, too).
pub async fn run_all<S, F, Fut>(make: F)
where
    S: SessionStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut failures: Vec<(&'static str, String)> = Vec::new();
    crate::__sessionkit_conformance! { @with run make failures }
    if !failures.is_empty() {
        let report: Vec<String> = failures
            .iter()
            .map(|(check, message)| format!("- {check}: {message}"))
            .collect();
        panic!(
            "{} of {} store conformance checks failed:\n{}",
            failures.len(),
            CHECKS.len(),
            report.join("\n")
        );
    }
}

async fn outcome(check: impl Future<Output = ()>) -> Result<(), String> {
    AssertUnwindSafe(check)
        .catch_unwind()
        .await
        .map_err(panic_message)
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

// ---------------------------------------------------------------------------
// Settings and helpers
// ---------------------------------------------------------------------------

const SECOND: Millis = 1_000;
const MINUTE: Millis = 60 * SECOND;
const HOUR: Millis = 60 * MINUTE;
/// The idle timeout of the sessions the checks start.
const IDLE: Millis = 30 * MINUTE;
/// `LoadOptions::refresh_after` of ordinary loads.
const REFRESH: Millis = MINUTE;
/// The grace window of old tokens.
const OJS: Millis = 10 * MINUTE;
/// The lifetime of an unadopted replacement (well under half of OJS).
const CIJS: Millis = 2 * MINUTE;
/// A connection lease.
const LEASE: Millis = 90 * SECOND;
/// A `refresh_after` that never comes due in a check (a century: large, but
/// far from overflowing any arithmetic a store may do with it).
const NEVER: Millis = 100 * 365 * 24 * HOUR;
/// How long to wait for an event.
const EVENT_WAIT: Duration = Duration::from_secs(2);

fn start() -> Millis {
    SystemClock.now()
}

/// Unwraps a store result: an error is a failure of the check.
#[track_caller]
fn ok<T>(result: crate::store::Result<T>, call: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{call}: the store returned an error: {err}"),
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn data(items: &[(&str, &str)]) -> HashMap<String, String> {
    pairs(items).into_iter().collect()
}

fn set(items: &[(&str, &str)]) -> Delta {
    Delta {
        set: pairs(items),
        ..Delta::default()
    }
}

/// A user id no other check (or earlier run on a shared backend) uses.
fn unique_user(name: &str) -> String {
    format!("{name}-{}", random_id())
}

fn bound(user: &str, version: u32) -> BoundUser {
    BoundUser {
        id: user.to_owned(),
        json: format!(r#"{{"id":"{user}","version":{version}}}"#),
    }
}

/// An anonymous session to create (random tag) and its token.
fn anonymous(now: Millis, items: &[(&str, &str)]) -> (NewSession, Token) {
    let token = Token::generate(&Tag::random());
    let new = NewSession {
        id: SessionId::generate(&token.tag()),
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
async fn create<S: SessionStore>(
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
fn login_request(user: &str, now: Millis) -> (Login, Token) {
    let tag = Tag::for_user(user);
    let token = Token::generate(&tag);
    let session = NewSession {
        id: SessionId::generate(&tag),
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
struct Member {
    id: SessionId,
    token: Token,
}

async fn log_in<S: SessionStore>(store: &S, user: &str, now: Millis) -> Member {
    let (login, token) = login_request(user, now);
    submit(store, login, token).await
}

async fn submit<S: SessionStore>(store: &S, login: Login, token: Token) -> Member {
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

fn options(now: Millis) -> LoadOptions {
    LoadOptions {
        now,
        refresh_after: Some(REFRESH),
        cijs: CIJS,
    }
}

/// An ordinary load.
async fn load<S: SessionStore>(store: &S, token: &Token, now: Millis) -> Lookup {
    ok(store.load(&token.digest(), &options(now)).await, "load")
}

/// A load that never slides the idle deadline, to probe a deadline without
/// moving it.
async fn probe<S: SessionStore>(store: &S, token: &Token, now: Millis) -> Lookup {
    let opts = LoadOptions {
        refresh_after: None,
        ..options(now)
    };
    ok(store.load(&token.digest(), &opts).await, "load")
}

async fn save<S: SessionStore>(store: &S, id: &SessionId, delta: &Delta, now: Millis) -> bool {
    ok(store.save(id, delta, now).await, "save")
}

async fn list<S: SessionStore>(store: &S, user: &str, now: Millis) -> Vec<SessionInfo> {
    ok(store.list_sessions(user, now).await, "list_sessions")
}

async fn listed_ids<S: SessionStore>(store: &S, user: &str, now: Millis) -> Vec<SessionId> {
    list(store, user, now)
        .await
        .into_iter()
        .map(|info| info.id)
        .collect()
}

async fn connections<S: SessionStore>(store: &S, user: &str, now: Millis) -> Vec<Connection> {
    let mut list = ok(store.list_connections(user, now).await, "list_connections");
    list.sort_by(|a, b| a.id.cmp(&b.id));
    list
}

async fn fetch<S: SessionStore>(
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

fn connection(session: &SessionId, node: &str, now: Millis) -> Connection {
    Connection {
        id: random_id(),
        node: node.to_owned(),
        session: session.clone(),
        opened_at: now,
    }
}

async fn connect<S: SessionStore>(
    store: &S,
    conn: &Connection,
    until: Millis,
    now: Millis,
) -> bool {
    ok(store.connect(conn, until, now).await, "connect")
}

fn sorted(mut conns: Vec<Connection>) -> Vec<Connection> {
    conns.sort_by(|a, b| a.id.cmp(&b.id));
    conns
}

/// A rotation of `old` to a fresh candidate, as the layer builds it.
fn rotation(id: &SessionId, old: &Token, now: Millis) -> (Rotation, Token) {
    let new = Token::generate(&old.tag());
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
async fn rotate_installed<S: SessionStore>(
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

fn describe(lookup: &Lookup) -> String {
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
        } => format!("Found {{ session {}, token: Replaced {{ .. }} }}", record.id),
        Lookup::Found { record, token } => {
            format!("Found {{ session {}, token: {token:?} }}", record.id)
        }
    }
}

fn expect_current(lookup: Lookup, what: &str) -> SessionRecord {
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
fn expect_grace(lookup: Lookup, what: &str) -> (SessionRecord, Option<String>) {
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

/// Expects a grace lookup whose replacement opens (with `old`) to `new`.
fn expect_replacement(lookup: Lookup, old: &Token, new: &Token, what: &str) -> SessionRecord {
    let (record, replacement) = expect_grace(lookup, what);
    match replacement {
        Some(sealed) => opens_to(old, &sealed, new, what),
        None => panic!(
            "{what}: expected Grace {{ replacement: Some(..) }}, got Grace {{ replacement: None }}"
        ),
    }
    record
}

fn expect_missing(lookup: Lookup, what: &str) {
    if lookup != Lookup::Missing {
        panic!("{what}: expected Missing, got {}", describe(&lookup));
    }
}

fn expect_stale(lookup: Lookup, what: &str) -> SessionId {
    match lookup {
        Lookup::Stale(id) => id,
        other => panic!("{what}: expected Stale(id), got {}", describe(&other)),
    }
}

/// Checks that `sealed` opens with `old` to `expected`.
fn opens_to(old: &Token, sealed: &str, expected: &Token, what: &str) {
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
async fn expect_events(
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
async fn join<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
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

// ---------------------------------------------------------------------------
// 1. create and load
// ---------------------------------------------------------------------------

/// `create`, then `load` of its token: `Found { Current }` with exactly the
/// record created (id, times, TTG, deadlines, label, data, no user).
pub async fn create_and_load<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let token = Token::generate(&Tag::random());
    let new = NewSession {
        id: SessionId::generate(&token.tag()),
        token: token.digest(),
        now: t0,
        idle_timeout: IDLE,
        absolute_deadline: Some(t0 + 8 * HOUR),
        user: None,
        label: Some("firefox on linux".to_owned()),
        data: pairs(&[("cart", r#"["apple","pear"]"#), ("visits", "1")]),
    };
    ok(store.create(&new).await, "create");
    let expected = SessionRecord {
        id: new.id.clone(),
        created_at: t0,
        last_seen: t0,
        idle_timeout: IDLE,
        absolute_deadline: Some(t0 + 8 * HOUR),
        ttg: t0,
        rotated_at: None,
        renew_token: false,
        user: None,
        label: Some("firefox on linux".to_owned()),
        data: data(&[("cart", r#"["apple","pear"]"#), ("visits", "1")]),
    };
    let record = expect_current(
        load(&store, &token, t0).await,
        "loading a new session by its first token",
    );
    assert_eq!(
        record, expected,
        "loading a new session by its first token: the record differs from what was created"
    );
    let record = expect_current(
        load(&store, &token, t0 + SECOND).await,
        "loading a new session again a second later",
    );
    assert_eq!(
        record, expected,
        "loading a new session again a second later (no refresh due): the record changed"
    );
}

/// `load` of a token no session has is `Missing`, also for a token that
/// shares the routing tag of a live session; such lookups create nothing.
pub async fn load_unknown_token<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let stranger = Token::generate(&Tag::random());
    expect_missing(
        load(&store, &stranger, t0).await,
        "loading a token no session was created with",
    );
    let (id, token) = create(&store, t0, &[("k", "1")]).await;
    let sibling = Token::generate(&token.tag());
    expect_missing(
        load(&store, &sibling, t0 + SECOND).await,
        "loading an unknown token with the routing tag of a live session",
    );
    let record = expect_current(
        load(&store, &token, t0 + 2 * SECOND).await,
        "loading the live session after unknown tokens were looked up",
    );
    assert_eq!(
        record.id, id,
        "the live session's token resolved to another session"
    );
    expect_missing(
        load(&store, &stranger, t0 + 3 * SECOND).await,
        "loading the unknown token a second time (a lookup must not create anything)",
    );
}

/// `load` slides `last_seen` to `now` only once `now - last_seen >=
/// refresh_after`, returns the refreshed record, and the idle deadline
/// (`last_seen + idle_timeout`) follows the slide.
pub async fn load_slides_idle_deadline<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (_, token) = create(&store, t0, &[]).await;
    let record = expect_current(
        load(&store, &token, t0 + REFRESH - 1).await,
        "a load refresh_after - 1 ms after creation",
    );
    assert_eq!(
        record.last_seen, t0,
        "a load {} ms after the last refresh, with refresh_after = {REFRESH} ms, must not slide last_seen",
        REFRESH - 1
    );
    let t1 = t0 + REFRESH;
    let record = expect_current(
        load(&store, &token, t1).await,
        "a load refresh_after after creation",
    );
    assert_eq!(
        record.last_seen, t1,
        "a load refresh_after after the last refresh must slide last_seen to now, \
         and return the refreshed record"
    );
    let record = expect_current(
        probe(&store, &token, t1 + IDLE - 1).await,
        "a load 1 ms before the slid idle deadline (after the original one)",
    );
    assert_eq!(
        record.last_seen, t1,
        "the slide of last_seen was not stored"
    );
    expect_missing(
        probe(&store, &token, t1 + IDLE).await,
        "a load at the slid idle deadline (last_seen + idle_timeout)",
    );
}

/// A session unused until its idle deadline (`last_seen + idle_timeout`)
/// is `Missing` from that moment, and a load does not revive it.
pub async fn idle_deadline_expires<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (_, token) = create(&store, t0, &[("a", "1")]).await;
    let record = expect_current(
        probe(&store, &token, t0 + IDLE - 1).await,
        "a load 1 ms before the idle deadline",
    );
    assert_eq!(
        record.last_seen, t0,
        "a load with refresh_after = 100 years must not slide last_seen"
    );
    expect_missing(
        load(&store, &token, t0 + IDLE).await,
        "a load at the idle deadline (last_seen + idle_timeout)",
    );
    expect_missing(
        load(&store, &token, t0 + IDLE + MINUTE).await,
        "a load a minute after the idle deadline (the expired load must not have revived it)",
    );
}

/// A session kept busy (its idle deadline sliding) is `Missing` from its
/// absolute deadline on, and cannot be saved then.
pub async fn absolute_deadline_expires<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let absolute = t0 + 10 * MINUTE;
    let (new, token) = anonymous(t0, &[("a", "1")]);
    let id = new.id.clone();
    ok(
        store
            .create(&NewSession {
                absolute_deadline: Some(absolute),
                ..new
            })
            .await,
        "create",
    );
    let mut t = t0;
    while t + 2 * MINUTE < absolute {
        t += 2 * MINUTE;
        let record = expect_current(
            load(&store, &token, t).await,
            "a load of a busy session before its absolute deadline",
        );
        assert_eq!(record.last_seen, t, "a due load did not slide last_seen");
        assert_eq!(
            record.absolute_deadline,
            Some(absolute),
            "a load changed the absolute deadline"
        );
    }
    expect_current(
        load(&store, &token, absolute - 1).await,
        "a load 1 ms before the absolute deadline",
    );
    expect_missing(
        load(&store, &token, absolute).await,
        "a load at the absolute deadline of a session used a moment ago",
    );
    assert!(
        !save(&store, &id, &set(&[("b", "2")]), absolute).await,
        "a save at the absolute deadline returned true, expected false"
    );
}

// ---------------------------------------------------------------------------
// 2. save
// ---------------------------------------------------------------------------

/// `save` applies every part of a delta (set, remove, clear, label,
/// idle_timeout) and touches nothing the delta does not name; an empty
/// delta changes nothing.
pub async fn save_applies_delta<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, token) = create(
        &store,
        t0,
        &[("a", "1"), ("b", "2"), ("c", "3"), ("keep", r#""k""#)],
    )
    .await;
    let delta = Delta {
        set: pairs(&[("a", "10"), ("d", "4")]),
        remove: vec!["b".to_owned(), "never-there".to_owned()],
        label: Some("phone".to_owned()),
        ..Delta::default()
    };
    assert!(
        save(&store, &id, &delta, t0 + SECOND).await,
        "a save of a live session returned false, expected true"
    );
    let record = expect_current(
        probe(&store, &token, t0 + 2 * SECOND).await,
        "a load after a save",
    );
    assert_eq!(
        record.data,
        data(&[("a", "10"), ("c", "3"), ("d", "4"), ("keep", r#""k""#)]),
        "after a save setting a and d and removing b: wrong data (keys a delta does not name must be untouched)"
    );
    assert_eq!(
        record.label.as_deref(),
        Some("phone"),
        "the delta's label was not applied"
    );
    assert_eq!(
        record.idle_timeout, IDLE,
        "a delta without idle_timeout changed it"
    );

    assert!(
        save(&store, &id, &Delta::default(), t0 + 3 * SECOND).await,
        "an empty save of a live session returned false, expected true"
    );
    let after = expect_current(
        probe(&store, &token, t0 + 4 * SECOND).await,
        "a load after an empty save",
    );
    assert_eq!(after.data, record.data, "an empty delta changed the data");
    assert_eq!(
        after.label, record.label,
        "a delta without a label changed the label"
    );

    let delta = Delta {
        clear: true,
        set: pairs(&[("x", "true")]),
        ..Delta::default()
    };
    assert!(
        save(&store, &id, &delta, t0 + 5 * SECOND).await,
        "a clearing save returned false, expected true"
    );
    let record = expect_current(
        probe(&store, &token, t0 + 6 * SECOND).await,
        "a load after a clearing save",
    );
    assert_eq!(
        record.data,
        data(&[("x", "true")]),
        "a delta with clear = true and set x must leave exactly x"
    );
    assert_eq!(
        record.label.as_deref(),
        Some("phone"),
        "clear must only clear the data"
    );

    let short = 5 * MINUTE;
    let delta = Delta {
        idle_timeout: Some(short),
        ..Delta::default()
    };
    assert!(
        save(&store, &id, &delta, t0 + 7 * SECOND).await,
        "a save changing the idle timeout returned false, expected true"
    );
    let record = expect_current(
        probe(&store, &token, t0 + 8 * SECOND).await,
        "a load after a save changing the idle timeout",
    );
    assert_eq!(
        record.idle_timeout, short,
        "the delta's idle_timeout was not applied"
    );
    assert_eq!(
        record.data,
        data(&[("x", "true")]),
        "an idle_timeout delta changed the data"
    );
    let deadline = record.last_seen + short;
    expect_current(
        probe(&store, &token, deadline - 1).await,
        "a load 1 ms before the new (shorter) idle deadline",
    );
    expect_missing(
        probe(&store, &token, deadline).await,
        "a load at last_seen + the idle timeout set by a save (the new timeout must be in force)",
    );
}

/// Saves are deltas: two saves changing different keys both survive, and so
/// do 20 concurrent saves of 20 distinct keys.
pub async fn saves_of_different_keys_merge<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, token) = create(&store, t0, &[("a", "0")]).await;
    // Two requests loaded the same session; each changed a different key.
    let one = set(&[("x", "1")]);
    let two = Delta {
        set: pairs(&[("y", "2")]),
        remove: vec!["a".to_owned()],
        ..Delta::default()
    };
    assert!(
        save(&store, &id, &one, t0 + SECOND).await,
        "first save returned false"
    );
    assert!(
        save(&store, &id, &two, t0 + SECOND).await,
        "second save returned false"
    );
    let record = expect_current(
        probe(&store, &token, t0 + 2 * SECOND).await,
        "a load after two saves",
    );
    assert_eq!(
        record.data,
        data(&[("x", "1"), ("y", "2")]),
        "two saves changing different keys must both survive"
    );

    let t1 = t0 + 3 * SECOND;
    let tasks = (0..20)
        .map(|i| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let delta = Delta {
                    set: vec![(format!("k{i}"), i.to_string())],
                    ..Delta::default()
                };
                ok(store.save(&id, &delta, t1).await, "concurrent save")
            })
        })
        .collect();
    for (i, saved) in join(tasks).await.into_iter().enumerate() {
        assert!(
            saved,
            "concurrent save {i} of a live session returned false"
        );
    }
    let record = expect_current(
        probe(&store, &token, t1 + SECOND).await,
        "a load after 20 concurrent saves",
    );
    let mut expected = data(&[("x", "1"), ("y", "2")]);
    expected.extend((0..20).map(|i| (format!("k{i}"), i.to_string())));
    assert_eq!(
        record.data, expected,
        "20 concurrent saves of distinct keys must all survive"
    );
}

/// `save` on a destroyed session (logged in or anonymous) or on an id that
/// never existed returns `false` and does not bring the session back: its
/// token stays `Missing` and the user's listing stays empty.
pub async fn save_after_destroy_changes_nothing<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("dana");
    let member = log_in(&store, &user, t0).await;
    assert!(
        ok(
            store
                .destroy(&member.id, EndReason::LoggedOut, t0 + SECOND)
                .await,
            "destroy"
        ),
        "destroying a live session returned false"
    );
    let delta = Delta {
        set: pairs(&[("late", "1")]),
        idle_timeout: Some(IDLE),
        label: Some("late".to_owned()),
        ..Delta::default()
    };
    assert!(
        !save(&store, &member.id, &delta, t0 + 2 * SECOND).await,
        "a save on a destroyed logged-in session returned true, expected false"
    );
    expect_missing(
        load(&store, &member.token, t0 + 3 * SECOND).await,
        "loading a destroyed session after a save tried to write to it",
    );
    assert_eq!(
        listed_ids(&store, &user, t0 + 3 * SECOND).await,
        Vec::<SessionId>::new(),
        "a save on a destroyed session put it back in the user's listing"
    );

    let (anon, anon_token) = create(&store, t0 + 4 * SECOND, &[("a", "1")]).await;
    ok(
        store
            .destroy(&anon, EndReason::LoggedOut, t0 + 4 * SECOND)
            .await,
        "destroy",
    );
    assert!(
        !save(&store, &anon, &delta, t0 + 5 * SECOND).await,
        "a save on a destroyed anonymous session returned true, expected false"
    );
    expect_missing(
        load(&store, &anon_token, t0 + 6 * SECOND).await,
        "loading a destroyed anonymous session after a save tried to write to it",
    );
    let never = SessionId::generate(&Tag::random());
    assert!(
        !save(&store, &never, &delta, t0 + 6 * SECOND).await,
        "a save on an id that never existed returned true, expected false"
    );
}

/// `save` on an expired session returns `false` and does not revive it,
/// even with a delta that sets a longer idle timeout.
pub async fn save_after_expiry_changes_nothing<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("eve");
    let member = log_in(&store, &user, t0).await;
    let dead = t0 + IDLE;
    let delta = Delta {
        set: pairs(&[("late", "1")]),
        idle_timeout: Some(10 * IDLE),
        label: Some("revived?".to_owned()),
        ..Delta::default()
    };
    assert!(
        !save(&store, &member.id, &delta, dead).await,
        "a save at the idle deadline returned true, expected false"
    );
    expect_missing(
        load(&store, &member.token, dead + SECOND).await,
        "loading an expired session after a save tried to write to it",
    );
    assert_eq!(
        listed_ids(&store, &user, dead + SECOND).await,
        Vec::<SessionId>::new(),
        "an expired session is listed after a save tried to write to it"
    );
}

// ---------------------------------------------------------------------------
// 3. rotate
// ---------------------------------------------------------------------------

/// `rotate` of the current token installs the candidate: it loads as
/// `Current` (adopted, so it no longer lapses) with the same session id and
/// data, TTG and `rotated_at` = the rotation's `now`.
pub async fn rotate_installs_replacement<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    let record = expect_current(
        load(&store, &new, t1).await,
        "loading the replacement right after it was installed",
    );
    assert_eq!(record.id, id, "a rotation changed the session id");
    assert_eq!(
        record.ttg, t1,
        "the replacement's TTG must be the rotation's now"
    );
    assert_eq!(
        record.rotated_at,
        Some(t1),
        "rotated_at must be the rotation's now"
    );
    assert_eq!(record.created_at, t0, "a rotation changed created_at");
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "a rotation changed the data"
    );
    expect_current(
        load(&store, &new, t1 + CIJS + MINUTE).await,
        "loading the replacement after CIJS, when it was adopted at once (an adopted token does not lapse)",
    );
}

/// Inside OJS the old token loads as `Grace { replacement: Some(sealed) }`,
/// `sealed` opening (with the old token) to the replacement, with the same
/// session id and data; writes made through either token are seen through
/// the other.
pub async fn grace_token_gets_sealed_replacement<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    let record = expect_replacement(
        load(&store, &old, t1 + SECOND).await,
        &old,
        &new,
        "loading the old token 1 s after the rotation (inside OJS)",
    );
    assert_eq!(
        record.id, id,
        "the old token resolved to another session id"
    );
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "the old token shows other data"
    );
    assert!(
        save(
            &store,
            &record.id,
            &set(&[("from_old", "1")]),
            t1 + 2 * SECOND
        )
        .await,
        "a save through the old token's session returned false"
    );
    let record = expect_current(
        load(&store, &new, t1 + 3 * SECOND).await,
        "loading the replacement after a write through the old token",
    );
    assert_eq!(
        record.data,
        data(&[("a", "1"), ("from_old", "1")]),
        "a write through the old token is not visible through the new one"
    );
    assert!(
        save(
            &store,
            &record.id,
            &set(&[("from_new", "2")]),
            t1 + 4 * SECOND
        )
        .await,
        "a save through the new token's session returned false"
    );
    let record = expect_replacement(
        load(&store, &old, t1 + 5 * SECOND).await,
        &old,
        &new,
        "loading the old token again inside OJS, after the replacement was adopted",
    );
    assert_eq!(
        record.data,
        data(&[("a", "1"), ("from_old", "1"), ("from_new", "2")]),
        "a write through the new token is not visible through the old one"
    );
}

/// Once OJS has passed since the rotation, the old token loads as
/// `Stale(id)` (1 ms before: still `Grace`), the replacement still works,
/// and a rotation with the stale token installs nothing (`Gone`).
pub async fn old_token_is_stale_after_grace<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    expect_current(
        load(&store, &new, t1 + SECOND).await,
        "loading the replacement (adopting it)",
    );
    expect_replacement(
        probe(&store, &old, t1 + OJS - 1).await,
        &old,
        &new,
        "loading the old token 1 ms before OJS ends",
    );
    let stale = expect_stale(
        load(&store, &old, t1 + OJS).await,
        "loading the old token when OJS has passed since the rotation",
    );
    assert_eq!(stale, id, "Stale carries another session's id");
    expect_current(
        load(&store, &new, t1 + OJS + SECOND).await,
        "loading the replacement after the old token's grace ended",
    );
    let (late, candidate) = rotation(&id, &old, t1 + OJS + 2 * SECOND);
    let rotated = ok(store.rotate(&late).await, "rotate");
    assert_eq!(
        rotated,
        Rotated::Gone,
        "rotating with a token whose grace ended must install nothing"
    );
    expect_missing(
        load(&store, &candidate, t1 + OJS + 3 * SECOND).await,
        "loading the candidate of a rotation with a stale token",
    );
}

/// Single flight: 50 concurrent `rotate` calls with the same old token and
/// different candidates give exactly one `Installed`; every other call gets
/// `Existing(sealed)` opening to the winner, the losing candidates never
/// work, and a later rotation or grace load hands out the winner too.
pub async fn rotate_is_single_flight<S: SessionStore + Clone>(store: S) {
    const RACERS: usize = 50;
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let tasks = (0..RACERS)
        .map(|_| {
            let store = store.clone();
            let (rotation, candidate) = rotation(&id, &old, t1);
            tokio::spawn(async move {
                let rotated = ok(store.rotate(&rotation).await, "concurrent rotate");
                (candidate, rotated)
            })
        })
        .collect();
    let results = join(tasks).await;
    let installed: Vec<&Token> = results
        .iter()
        .filter(|(_, r)| *r == Rotated::Installed)
        .map(|(c, _)| c)
        .collect();
    let gone = results.iter().filter(|(_, r)| *r == Rotated::Gone).count();
    assert!(
        installed.len() == 1 && gone == 0,
        "{RACERS} concurrent rotations of one token: expected exactly 1 Installed and {} Existing, \
         got {} Installed, {gone} Gone and {} Existing",
        RACERS - 1,
        installed.len(),
        RACERS - installed.len() - gone
    );
    let winner = installed[0].clone();
    for (candidate, rotated) in &results {
        if let Rotated::Existing(sealed) = rotated {
            opens_to(
                &old,
                sealed,
                &winner,
                "a concurrent rotation that lost the race (Existing)",
            );
        }
        if candidate != &winner {
            expect_missing(
                load(&store, candidate, t1 + SECOND).await,
                "loading the candidate of a rotation that lost the race",
            );
        }
    }
    let (late, _) = rotation(&id, &old, t1 + 2 * SECOND);
    match ok(store.rotate(&late).await, "rotate") {
        Rotated::Existing(sealed) => opens_to(
            &old,
            &sealed,
            &winner,
            "a later rotation of the old token inside OJS",
        ),
        other => panic!(
            "a later rotation of the old token inside OJS: expected Existing(sealed), got {other:?}"
        ),
    }
    expect_replacement(
        load(&store, &old, t1 + 3 * SECOND).await,
        &old,
        &winner,
        "loading the old token after the race",
    );
    let record = expect_current(
        load(&store, &winner, t1 + 4 * SECOND).await,
        "loading the winning replacement",
    );
    assert_eq!(record.id, id, "the winner resolved to another session");
}

/// An unadopted replacement lapses CIJS after it was handed out: presented
/// 1 ms before, it is adopted for good; presented at that moment, it is
/// `Missing`, the old token's grace load then carries `None`, and the
/// lapsed replacement stays dead.
pub async fn unadopted_replacement_lapses<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (a, old_a) = create(&store, t0, &[]).await;
    let (b, old_b) = create(&store, t0, &[]).await;
    let t1 = t0 + 5 * MINUTE;
    let new_a = rotate_installed(&store, &a, &old_a, t1, "rotating session A").await;
    let new_b = rotate_installed(&store, &b, &old_b, t1, "rotating session B").await;
    expect_current(
        load(&store, &new_a, t1 + CIJS - 1).await,
        "presenting a replacement 1 ms before it lapses",
    );
    expect_missing(
        load(&store, &new_b, t1 + CIJS).await,
        "presenting an unadopted replacement CIJS after it was handed out",
    );
    expect_current(
        load(&store, &new_a, t1 + CIJS + MINUTE).await,
        "presenting, after CIJS, a replacement adopted before it lapsed",
    );
    let (record, replacement) = expect_grace(
        load(&store, &old_b, t1 + CIJS + MINUTE).await,
        "loading the old token inside OJS after its replacement lapsed",
    );
    assert_eq!(record.id, b, "the old token resolved to another session");
    assert!(
        replacement.is_none(),
        "loading the old token inside OJS after its replacement lapsed: expected Grace {{ replacement: None }}, got Some"
    );
    expect_missing(
        load(&store, &new_b, t1 + CIJS + MINUTE + 1).await,
        "presenting a lapsed replacement again",
    );
}

/// Handing an unadopted replacement out again moves its lapse to CIJS after
/// that hand-out: a grace load of the old token does, and so does a
/// `rotate` answered with `Existing`; the lapse is exactly CIJS after the
/// last hand-out, not later.
pub async fn handing_out_replacement_extends_lapse<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (a, old_a) = create(&store, t0, &[]).await;
    let (b, old_b) = create(&store, t0, &[]).await;
    let (c, old_c) = create(&store, t0, &[]).await;
    let t1 = t0 + 5 * MINUTE;
    let new_a = rotate_installed(&store, &a, &old_a, t1, "rotating session A").await;
    let new_b = rotate_installed(&store, &b, &old_b, t1, "rotating session B").await;
    let new_c = rotate_installed(&store, &c, &old_c, t1, "rotating session C").await;
    let half = CIJS / 2;
    expect_replacement(
        load(&store, &old_b, t1 + half).await,
        &old_b,
        &new_b,
        "a grace load of B's old token half way through CIJS",
    );
    expect_replacement(
        load(&store, &old_a, t1 + CIJS - 1).await,
        &old_a,
        &new_a,
        "a grace load of A's old token 1 ms before its replacement lapses",
    );
    let (again, _) = rotation(&c, &old_c, t1 + CIJS - 1);
    match ok(store.rotate(&again).await, "rotate") {
        Rotated::Existing(sealed) => opens_to(
            &old_c,
            &sealed,
            &new_c,
            "a second rotation of C's old token 1 ms before its replacement lapses",
        ),
        other => panic!(
            "a second rotation of C's old token inside OJS: expected Existing(sealed), got {other:?}"
        ),
    }
    expect_missing(
        load(&store, &new_b, t1 + half + CIJS).await,
        "presenting B's replacement CIJS after a grace load re-handed it (it must lapse then)",
    );
    expect_current(
        load(&store, &new_a, t1 + 2 * CIJS - 2).await,
        "presenting A's replacement 1 ms before CIJS after a grace load re-handed it \
         (the grace load must extend the lapse)",
    );
    expect_current(
        load(&store, &new_c, t1 + 2 * CIJS - 2).await,
        "presenting C's replacement 1 ms before CIJS after a rotate answered Existing \
         (handing it out again must extend the lapse)",
    );
}

/// After a replacement lapsed, a `rotate` of the old token (inside OJS)
/// installs a fresh candidate: the grace load hands out the fresh one, the
/// lapsed one never works again (not even as a rotation's old token), and
/// the old token's grace still ends OJS after the *first* rotation.
pub async fn lapsed_replacement_is_replaced<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let lapsed = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    let t2 = t1 + CIJS;
    let (_, replacement) = expect_grace(
        load(&store, &old, t2).await,
        "loading the old token once its replacement lapsed",
    );
    assert!(
        replacement.is_none(),
        "loading the old token once its replacement lapsed: expected Grace {{ replacement: None }}, got Some"
    );
    let fresh = rotate_installed(
        &store,
        &id,
        &old,
        t2,
        "rotating the old token inside OJS after its replacement lapsed",
    )
    .await;
    expect_missing(
        load(&store, &lapsed, t2 + SECOND).await,
        "presenting the lapsed replacement after a fresh one was installed",
    );
    expect_replacement(
        load(&store, &old, t2 + 2 * SECOND).await,
        &old,
        &fresh,
        "a grace load of the old token after a fresh replacement was installed",
    );
    let record = expect_current(
        load(&store, &fresh, t2 + 3 * SECOND).await,
        "presenting the fresh replacement",
    );
    assert_eq!(
        record.id, id,
        "the fresh replacement resolved to another session"
    );
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "the fresh replacement shows other data"
    );
    assert_eq!(
        record.ttg, t2,
        "the fresh replacement's TTG must be its rotation's now"
    );
    expect_missing(
        load(&store, &lapsed, t2 + 4 * SECOND).await,
        "presenting the lapsed replacement after the fresh one was adopted",
    );
    let (from_lapsed, _) = rotation(&id, &lapsed, t2 + 5 * SECOND);
    assert_eq!(
        ok(store.rotate(&from_lapsed).await, "rotate"),
        Rotated::Gone,
        "rotating with a lapsed replacement as the old token must install nothing"
    );
    expect_stale(
        load(&store, &old, t1 + OJS).await,
        "loading the old token OJS after the first rotation (minting a fresh replacement must not extend its grace)",
    );
}

/// A rotation nobody follows up (the replacement never presented, the old
/// token unused): once OJS and CIJS have passed, no token of the session
/// resolves (`Missing`, not `Stale`), it is not listed, and it cannot be
/// saved or fetched.
pub async fn abandoned_rotation_ends_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("erin");
    let member = log_in(&store, &user, t0).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let end = t1 + OJS.max(CIJS);
    expect_missing(
        load(&store, &member.token, end).await,
        "loading the old token after OJS, its replacement having lapsed unadopted (the session is unreachable)",
    );
    expect_missing(
        load(&store, &new, end).await,
        "loading the unadopted replacement after OJS and CIJS",
    );
    assert_eq!(
        listed_ids(&store, &user, end).await,
        Vec::<SessionId>::new(),
        "a session no token can reach any more is still listed"
    );
    assert!(
        !save(&store, &member.id, &set(&[("a", "1")]), end).await,
        "a save on a session no token can reach returned true"
    );
    assert!(
        fetch(&store, &member.id, None, None, end).await.is_none(),
        "fetch of a session no token can reach returned Some"
    );
}

// ---------------------------------------------------------------------------
// 4. regenerate
// ---------------------------------------------------------------------------

/// `regenerate` kills every token at once (current and grace: `Missing`),
/// makes the new token current and adopted with TTG = now, and applies the
/// delta; on a destroyed or expired session it returns `false` and the new
/// token does not work.
pub async fn regenerate_replaces_every_token<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1"), ("keep", "2")]).await;
    let (expiring, expiring_token) = create(&store, t0, &[]).await;
    let t1 = t0 + 5 * MINUTE;
    let rotated = rotate_installed(&store, &id, &old, t1, "rotating before regenerate").await;
    let t2 = t1 + SECOND;
    let new = Token::generate(&id.tag());
    let delta = Delta {
        set: pairs(&[("b", "3")]),
        remove: vec!["a".to_owned()],
        label: Some("admin".to_owned()),
        ..Delta::default()
    };
    assert!(
        ok(
            store.regenerate(&id, &new.digest(), &delta, t2).await,
            "regenerate"
        ),
        "regenerate of a live session returned false"
    );
    expect_missing(
        load(&store, &old, t2).await,
        "loading the grace token right after regenerate (no grace window)",
    );
    expect_missing(
        load(&store, &rotated, t2).await,
        "loading the previous current token right after regenerate",
    );
    // Not presented before CIJS: a regenerated token must not lapse.
    let record = expect_current(
        load(&store, &new, t2 + CIJS + MINUTE).await,
        "loading the regenerated token (first presented after CIJS)",
    );
    assert_eq!(record.id, id, "regenerate changed the session id");
    assert_eq!(
        record.data,
        data(&[("keep", "2"), ("b", "3")]),
        "regenerate did not apply its delta"
    );
    assert_eq!(
        record.label.as_deref(),
        Some("admin"),
        "regenerate did not apply the label"
    );
    assert_eq!(
        record.ttg, t2,
        "the regenerated token's TTG must be regenerate's now"
    );

    let t3 = t2 + CIJS + 2 * MINUTE;
    ok(
        store.destroy(&id, EndReason::LoggedOut, t3).await,
        "destroy",
    );
    let after_destroy = Token::generate(&id.tag());
    assert!(
        !ok(
            store
                .regenerate(&id, &after_destroy.digest(), &Delta::default(), t3)
                .await,
            "regenerate"
        ),
        "regenerate of a destroyed session returned true"
    );
    expect_missing(
        load(&store, &after_destroy, t3 + SECOND).await,
        "loading the token of a regenerate that returned false (destroyed session)",
    );

    let dead = t0 + IDLE;
    let after_expiry = Token::generate(&expiring.tag());
    assert!(
        !ok(
            store
                .regenerate(&expiring, &after_expiry.digest(), &set(&[("a", "1")]), dead)
                .await,
            "regenerate"
        ),
        "regenerate of an expired session returned true"
    );
    expect_missing(
        load(&store, &after_expiry, dead).await,
        "loading the token of a regenerate that returned false (expired session)",
    );
    expect_missing(
        load(&store, &expiring_token, dead).await,
        "loading an expired session after a regenerate tried to revive it",
    );
}

// ---------------------------------------------------------------------------
// 5. login
// ---------------------------------------------------------------------------

/// `login` from an anonymous session carries its data over with the delta
/// applied on top, ends it (token `Missing`, a `Replaced` event), and
/// starts a session whose token is `Current`, with the user bound, listed
/// for the user.
pub async fn login_carries_data_over<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("alice");
    let (anon, anon_token) = create(&store, t0, &[("cart", r#"["apple"]"#), ("a", "1")]).await;
    let mut events = store.subscribe();
    let t1 = t0 + MINUTE;
    let (mut login, token) = login_request(&user, t1);
    login.from = Some(anon.clone());
    login.delta = Delta {
        set: pairs(&[("b", "2")]),
        remove: vec!["a".to_owned()],
        ..Delta::default()
    };
    let outcome = ok(store.login(&login).await, "login");
    let expected = data(&[("cart", r#"["apple"]"#), ("b", "2")]);
    assert_eq!(
        outcome.data, expected,
        "LoginOutcome::data must be the previous session's data with the delta applied"
    );
    assert!(
        outcome.evicted.is_empty(),
        "a login without a limit evicted sessions"
    );
    expect_missing(
        load(&store, &anon_token, t1).await,
        "loading the anonymous session's token after login (it must die at once)",
    );
    assert!(
        !save(&store, &anon, &set(&[("late", "1")]), t1).await,
        "a save on the session a login replaced returned true"
    );
    let record = expect_current(
        load(&store, &token, t1).await,
        "loading the token a login started",
    );
    assert_eq!(
        record.id, login.session.id,
        "the login's token resolved to another session"
    );
    assert_eq!(
        record.user,
        Some(bound(&user, 1)),
        "the login did not bind the user"
    );
    assert_eq!(
        record.data, expected,
        "the logged-in session has other data than LoginOutcome::data"
    );
    assert_eq!(
        record.created_at, t1,
        "a logged-in session starts at the login"
    );
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![login.session.id.clone()],
        "the logged-in session must be listed for its user"
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&anon),
        EndReason::Replaced,
        "the anonymous session a login replaced",
    )
    .await;
}

/// `login` without a previous session starts with the delta's data; a
/// login whose previous session is already gone carries nothing over and
/// still succeeds.
pub async fn login_without_previous_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("bob");
    let (mut login, token) = login_request(&user, t0);
    login.delta = set(&[("x", "1")]);
    let outcome = ok(store.login(&login).await, "login");
    assert_eq!(
        outcome.data,
        data(&[("x", "1")]),
        "a login without `from` must start with the delta's data"
    );
    let record = expect_current(
        load(&store, &token, t0).await,
        "loading a fresh login's token",
    );
    assert_eq!(
        record.user,
        Some(bound(&user, 1)),
        "the login did not bind the user"
    );
    assert_eq!(
        record.data,
        data(&[("x", "1")]),
        "the logged-in session has the wrong data"
    );

    let (gone, _) = create(&store, t0, &[("old", "1")]).await;
    ok(
        store.destroy(&gone, EndReason::LoggedOut, t0).await,
        "destroy",
    );
    let t1 = t0 + SECOND;
    let (mut second, second_token) = login_request(&user, t1);
    second.from = Some(gone);
    second.delta = set(&[("y", "2")]);
    let outcome = ok(store.login(&second).await, "login");
    assert_eq!(
        outcome.data,
        data(&[("y", "2")]),
        "a login from a destroyed session must carry nothing over"
    );
    expect_current(
        load(&store, &second_token, t1).await,
        "loading the token of a login whose previous session was gone",
    );
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![login.session.id.clone(), second.session.id.clone()],
        "both logins must be listed, oldest first"
    );
}

/// `login` with `max_sessions` revokes the user's oldest sessions (by
/// `created_at`) beyond the limit: returned in `evicted`, tokens dead, no
/// longer listed, a `Revoked` event each.
pub async fn login_enforces_max_sessions<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("carol");
    let s1 = log_in(&store, &user, t0).await;
    let s2 = log_in(&store, &user, t0 + SECOND).await;
    let s3 = log_in(&store, &user, t0 + 2 * SECOND).await;
    let mut events = store.subscribe();
    let t1 = t0 + 3 * SECOND;
    let (mut login, token) = login_request(&user, t1);
    login.max_sessions = Some(2);
    let outcome = ok(store.login(&login).await, "login");
    let evicted: HashSet<SessionId> = outcome.evicted.iter().cloned().collect();
    assert_eq!(
        evicted,
        HashSet::from([s1.id.clone(), s2.id.clone()]),
        "a 4th login with max_sessions = 2 must evict the 2 oldest sessions (got {} ids)",
        outcome.evicted.len()
    );
    assert_eq!(outcome.evicted.len(), 2, "evicted lists a session twice");
    expect_missing(
        load(&store, &s1.token, t1).await,
        "loading the oldest session after it was evicted",
    );
    expect_missing(
        load(&store, &s2.token, t1).await,
        "loading the 2nd oldest session after it was evicted",
    );
    expect_current(
        load(&store, &s3.token, t1).await,
        "loading the session the limit kept",
    );
    expect_current(load(&store, &token, t1).await, "loading the new session");
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![s3.id.clone(), login.session.id.clone()],
        "after the limit: the listing must hold the 2 newest sessions"
    );
    expect_events(
        &mut events,
        &[s1.id, s2.id],
        EndReason::Revoked,
        "sessions evicted by max_sessions",
    )
    .await;

    let (mut fifth, _) = login_request(&user, t1 + SECOND);
    fifth.max_sessions = Some(2);
    let outcome = ok(store.login(&fifth).await, "login");
    assert_eq!(
        outcome.evicted,
        vec![s3.id.clone()],
        "a 5th login with max_sessions = 2 must evict exactly the oldest live session"
    );
    assert_eq!(
        listed_ids(&store, &user, t1 + SECOND).await,
        vec![login.session.id, fifth.session.id],
        "after the second limited login: wrong listing"
    );
}

// ---------------------------------------------------------------------------
// 6. destroy
// ---------------------------------------------------------------------------

/// `destroy` kills every token (current and grace), removes the session
/// from its user's listing and its connections, returns `true` then
/// `false`, and publishes `SessionEnded` with the reason given.
pub async fn destroy_ends_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("dave");
    let member = log_in(&store, &user, t0).await;
    let (anon, _) = create(&store, t0, &[]).await;
    let conn = connection(&member.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + HOUR, t0).await,
        "connect to a live session returned false"
    );
    let t1 = t0 + MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let mut events = store.subscribe();
    let t2 = t1 + SECOND;
    assert!(
        ok(
            store.destroy(&member.id, EndReason::LoggedOut, t2).await,
            "destroy"
        ),
        "destroying a live session returned false"
    );
    expect_missing(
        load(&store, &member.token, t2).await,
        "loading a destroyed session's grace token",
    );
    expect_missing(
        load(&store, &new, t2).await,
        "loading a destroyed session's current token",
    );
    assert_eq!(
        listed_ids(&store, &user, t2).await,
        Vec::<SessionId>::new(),
        "a destroyed session is still listed"
    );
    assert_eq!(
        connections(&store, &user, t2).await,
        Vec::<Connection>::new(),
        "a destroyed session's connection is still listed"
    );
    assert!(
        fetch(&store, &member.id, Some(&new), None, t2)
            .await
            .is_none(),
        "fetch of a destroyed session returned Some"
    );
    assert!(
        !ok(
            store.destroy(&member.id, EndReason::LoggedOut, t2).await,
            "destroy"
        ),
        "destroying a session a second time returned true"
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&member.id),
        EndReason::LoggedOut,
        "a session destroyed with LoggedOut",
    )
    .await;
    assert!(
        ok(
            store.destroy(&anon, EndReason::StaleToken, t2).await,
            "destroy"
        ),
        "destroying a live anonymous session returned false"
    );
    expect_events(
        &mut events,
        &[anon],
        EndReason::StaleToken,
        "a session destroyed with StaleToken",
    )
    .await;
}

// ---------------------------------------------------------------------------
// 7. user index
// ---------------------------------------------------------------------------

/// `list_sessions` returns every live session of the user, oldest first,
/// with exact metadata (created, last_seen, idle and absolute deadlines,
/// label), and nothing that contains a token or its digest.
pub async fn list_sessions_reports_metadata<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("frank");
    let mut expected = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..6u64 {
        let now = t0 + i * SECOND;
        let (mut login, token) = login_request(&user, now);
        login.session.label = (i % 2 == 0).then(|| format!("device {i}"));
        login.session.absolute_deadline = (i % 3 == 0).then_some(t0 + 8 * HOUR);
        if i == 5 {
            login.session.idle_timeout = 10 * MINUTE;
        }
        expected.push(SessionInfo {
            id: login.session.id.clone(),
            created_at: now,
            last_seen: now,
            idle_deadline: now + login.session.idle_timeout,
            absolute_deadline: login.session.absolute_deadline,
            label: login.session.label.clone(),
        });
        tokens.push(token.clone());
        submit(&store, login, token).await;
    }
    let t1 = t0 + 2 * REFRESH;
    expect_current(
        load(&store, &tokens[0], t1).await,
        "loading the oldest session",
    );
    expected[0].last_seen = t1;
    expected[0].idle_deadline = t1 + IDLE;
    let listing = list(&store, &user, t1).await;
    assert_eq!(
        listing, expected,
        "list_sessions must return every live session of the user, oldest first, with its metadata"
    );
    let json = match serde_json::to_string(&listing) {
        Ok(json) => json,
        Err(err) => panic!("a session listing does not serialize: {err}"),
    };
    for token in &tokens {
        assert!(
            !json.contains(token.as_str()) && !json.contains(&token.digest().hash),
            "a session listing contains a token or a token digest"
        );
    }
    assert_eq!(
        listed_ids(&store, &unique_user("nobody"), t1).await,
        Vec::<SessionId>::new(),
        "a user without sessions has a non-empty listing"
    );
}

/// Expired sessions drop out of the user's listing, and neither
/// `revoke(All)` nor `sync_user` counts them.
pub async fn list_sessions_prunes_expired<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("grace");
    let (mut short, short_token) = login_request(&user, t0);
    short.session.idle_timeout = 5 * MINUTE;
    let short = submit(&store, short, short_token).await;
    let long = log_in(&store, &user, t0 + SECOND).await;
    let t1 = t0 + 5 * MINUTE;
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![long.id.clone()],
        "a session past its idle deadline is still listed"
    );
    expect_missing(
        load(&store, &short.token, t1).await,
        "loading the expired session",
    );
    assert_eq!(
        ok(store.sync_user(&bound(&user, 2), t1).await, "sync_user"),
        1,
        "sync_user counted an expired session"
    );
    assert_eq!(
        ok(store.revoke(&user, &Revoke::All, t1).await, "revoke"),
        vec![long.id],
        "revoke(All) must return exactly the live sessions it revoked"
    );
}

/// 1,000 logins of one user (no limit) are all listed; once past their idle
/// deadline the listing is empty and nothing is left to revoke or sync.
pub async fn user_index_empties_after_expiry<S: SessionStore + Clone>(store: S) {
    const MANY: usize = 1_000;
    const BATCH: usize = 50;
    let user = unique_user("henry");
    let mut ids = HashSet::new();
    let mut some_token = None;
    // This takes a while on a networked store: let logical time catch up
    // with the real clock between batches, so no call is given a time far
    // behind it.
    let mut now = start();
    for _ in 0..MANY / BATCH {
        now = now.max(SystemClock.now());
        let batch = (0..BATCH).map(|_| log_in(&store, &user, now));
        for member in join_all(batch).await {
            ids.insert(member.id);
            some_token = Some(member.token);
        }
    }
    // Every session's idle deadline is at most `now + IDLE`.
    let t1 = now.max(SystemClock.now()) + SECOND;
    let listed: HashSet<SessionId> = listed_ids(&store, &user, t1).await.into_iter().collect();
    assert!(
        listed == ids,
        "after {MANY} logins of one user: {} of them listed, {} listed ids unknown",
        listed.intersection(&ids).count(),
        listed.difference(&ids).count()
    );
    let dead = (now + IDLE).max(t1);
    let left = listed_ids(&store, &user, dead).await;
    assert!(
        left.is_empty(),
        "after the idle deadline of {MANY} sessions, {} are still listed",
        left.len()
    );
    if let Some(token) = some_token {
        expect_missing(
            load(&store, &token, dead).await,
            "loading one of the expired sessions",
        );
    }
    assert_eq!(
        ok(store.revoke(&user, &Revoke::All, dead).await, "revoke"),
        Vec::<SessionId>::new(),
        "revoke(All) of a user whose sessions all expired revoked something"
    );
    assert_eq!(
        ok(store.sync_user(&bound(&user, 2), dead).await, "sync_user"),
        0,
        "sync_user of a user whose sessions all expired updated something"
    );
}

/// `revoke` with `One`, `AllExcept` and `All` returns exactly the ids it
/// revoked (nothing for ids already gone), kills their tokens, updates the
/// listing and publishes `Revoked` for each.
pub async fn revoke_scopes<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("ivy");
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(log_in(&store, &user, t0 + i * SECOND).await);
    }
    let [a, b, c, d, e] = &members[..] else {
        unreachable!("five sessions were logged in")
    };
    let mut events = store.subscribe();
    let t1 = t0 + MINUTE;
    assert_eq!(
        ok(
            store.revoke(&user, &Revoke::One(a.id.clone()), t1).await,
            "revoke"
        ),
        vec![a.id.clone()],
        "revoke(One(a)) must return [a]"
    );
    expect_missing(
        load(&store, &a.token, t1).await,
        "loading a revoked session",
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&a.id),
        EndReason::Revoked,
        "a session revoked with One",
    )
    .await;
    assert_eq!(
        ok(
            store.revoke(&user, &Revoke::One(a.id.clone()), t1).await,
            "revoke"
        ),
        Vec::<SessionId>::new(),
        "revoking an already revoked session must return nothing"
    );
    let revoked: HashSet<SessionId> = ok(
        store
            .revoke(&user, &Revoke::AllExcept(b.id.clone()), t1)
            .await,
        "revoke",
    )
    .into_iter()
    .collect();
    assert_eq!(
        revoked,
        HashSet::from([c.id.clone(), d.id.clone(), e.id.clone()]),
        "revoke(AllExcept(b)) must return exactly the other live sessions"
    );
    for m in [c, d, e] {
        expect_missing(
            load(&store, &m.token, t1).await,
            "loading a session revoked by AllExcept",
        );
    }
    expect_current(
        load(&store, &b.token, t1).await,
        "loading the session AllExcept kept",
    );
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![b.id.clone()],
        "after revoke(AllExcept(b)) only b must be listed"
    );
    expect_events(
        &mut events,
        &[c.id.clone(), d.id.clone(), e.id.clone()],
        EndReason::Revoked,
        "sessions revoked with AllExcept",
    )
    .await;
    assert_eq!(
        ok(store.revoke(&user, &Revoke::All, t1).await, "revoke"),
        vec![b.id.clone()],
        "revoke(All) must return the last live session"
    );
    expect_missing(
        load(&store, &b.token, t1).await,
        "loading a session revoked by All",
    );
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        Vec::<SessionId>::new(),
        "after revoke(All) nothing must be listed"
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&b.id),
        EndReason::Revoked,
        "a session revoked with All",
    )
    .await;
    assert_eq!(
        ok(store.revoke(&user, &Revoke::All, t1).await, "revoke"),
        Vec::<SessionId>::new(),
        "revoke(All) of a user without sessions must return nothing"
    );
}

/// `revoke` only touches the given user's sessions: revoking another
/// user's (or an anonymous) session id by `One` returns nothing and that
/// session still loads and stays listed.
pub async fn revoke_ignores_other_users<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let alice = unique_user("alice");
    let bob = unique_user("bob");
    let a = log_in(&store, &alice, t0).await;
    let b = log_in(&store, &bob, t0).await;
    let (anon, anon_token) = create(&store, t0, &[]).await;
    let t1 = t0 + SECOND;
    assert_eq!(
        ok(
            store.revoke(&bob, &Revoke::One(a.id.clone()), t1).await,
            "revoke"
        ),
        Vec::<SessionId>::new(),
        "revoking another user's session by id must do nothing"
    );
    assert_eq!(
        ok(
            store.revoke(&alice, &Revoke::One(b.id.clone()), t1).await,
            "revoke"
        ),
        Vec::<SessionId>::new(),
        "revoking another user's session by id must do nothing"
    );
    assert_eq!(
        ok(
            store.revoke(&alice, &Revoke::One(anon.clone()), t1).await,
            "revoke"
        ),
        Vec::<SessionId>::new(),
        "revoking an anonymous session through a user must do nothing"
    );
    expect_current(
        load(&store, &a.token, t1).await,
        "loading alice's session after bob revoked its id",
    );
    expect_current(
        load(&store, &b.token, t1).await,
        "loading bob's session after alice revoked its id",
    );
    expect_current(
        load(&store, &anon_token, t1).await,
        "loading an anonymous session after a user revoked its id",
    );
    assert_eq!(
        listed_ids(&store, &alice, t1).await,
        vec![a.id.clone()],
        "alice's listing changed after bob revoked her session's id"
    );
    assert_eq!(
        ok(store.revoke(&bob, &Revoke::All, t1).await, "revoke"),
        vec![b.id],
        "revoke(All) of bob must revoke exactly bob's session"
    );
    expect_current(
        load(&store, &a.token, t1).await,
        "loading alice's session after bob's revoke(All)",
    );
}

/// 20 logins racing 5 `revoke(All)` of the same user leave a consistent
/// state: every session is either listed (and loads) or was returned by
/// exactly one revoke (and does not load).
pub async fn concurrent_logins_and_revokes_stay_consistent<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("jack");
    let mut logins = Vec::new();
    let mut revokes = Vec::new();
    for i in 0..20 {
        let (s, u) = (store.clone(), user.clone());
        logins.push(tokio::spawn(async move {
            let member = log_in(&s, &u, t0).await;
            (member.id, member.token)
        }));
        if i % 4 == 3 {
            let (s, u) = (store.clone(), user.clone());
            revokes.push(tokio::spawn(async move {
                ok(s.revoke(&u, &Revoke::All, t0).await, "concurrent revoke")
            }));
        }
    }
    let sessions = join(logins).await;
    let revoked_lists = join(revokes).await;
    let revoked_total: usize = revoked_lists.iter().map(Vec::len).sum();
    let revoked: HashSet<SessionId> = revoked_lists.into_iter().flatten().collect();
    assert_eq!(
        revoked.len(),
        revoked_total,
        "two concurrent revoke(All) calls returned the same session"
    );
    let t1 = t0 + SECOND;
    let listed: HashSet<SessionId> = listed_ids(&store, &user, t1).await.into_iter().collect();
    for (id, token) in &sessions {
        let lookup = probe(&store, token, t1).await;
        match (listed.contains(id), revoked.contains(id)) {
            (true, false) => {
                expect_current(lookup, "loading a listed session after logins raced revokes");
            }
            (false, true) => {
                expect_missing(lookup, "loading a revoked session after logins raced revokes");
            }
            (true, true) => panic!(
                "after logins raced revokes: session {id} was returned by a revoke but is still listed ({})",
                describe(&lookup)
            ),
            (false, false) => panic!(
                "after logins raced revokes: session {id} is neither listed nor revoked ({})",
                describe(&lookup)
            ),
        }
    }
    let known: HashSet<&SessionId> = sessions.iter().map(|(id, _)| id).collect();
    assert!(
        listed.iter().all(|id| known.contains(id)),
        "after logins raced revokes: the listing holds ids no login created"
    );
}

/// `sync_user` replaces the user object in every live session of that user
/// (returning how many), leaves their data alone, and touches neither
/// other users' sessions nor ended ones.
pub async fn sync_user_updates_live_sessions<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let alice = unique_user("alice");
    let bob = unique_user("bob");
    let (mut first, first_token) = login_request(&alice, t0);
    first.delta = set(&[("x", "1")]);
    let a1 = submit(&store, first, first_token).await;
    let a2 = log_in(&store, &alice, t0 + SECOND).await;
    let gone = log_in(&store, &alice, t0 + 2 * SECOND).await;
    let (mut short, short_token) = login_request(&alice, t0 + 3 * SECOND);
    short.session.idle_timeout = 5 * MINUTE;
    let expired = submit(&store, short, short_token).await;
    let b1 = log_in(&store, &bob, t0 + 4 * SECOND).await;
    ok(
        store
            .destroy(&gone.id, EndReason::LoggedOut, t0 + 5 * SECOND)
            .await,
        "destroy",
    );
    let t1 = t0 + 3 * SECOND + 5 * MINUTE;
    let updated = bound(&alice, 2);
    assert_eq!(
        ok(store.sync_user(&updated, t1).await, "sync_user"),
        2,
        "sync_user must count exactly the user's live sessions"
    );
    let r1 = expect_current(
        probe(&store, &a1.token, t1).await,
        "loading a synced session",
    );
    assert_eq!(
        r1.user,
        Some(updated.clone()),
        "sync_user did not update a live session"
    );
    assert_eq!(
        r1.data,
        data(&[("x", "1")]),
        "sync_user changed a session's data"
    );
    let r2 = expect_current(
        probe(&store, &a2.token, t1).await,
        "loading a synced session",
    );
    assert_eq!(
        r2.user,
        Some(updated),
        "sync_user did not update a live session"
    );
    assert_eq!(
        r2.data,
        HashMap::new(),
        "sync_user changed a session's data"
    );
    let rb = expect_current(
        probe(&store, &b1.token, t1).await,
        "loading another user's session",
    );
    assert_eq!(
        rb.user,
        Some(bound(&bob, 1)),
        "sync_user changed another user's session"
    );
    expect_missing(
        load(&store, &gone.token, t1).await,
        "loading a destroyed session after sync_user",
    );
    expect_missing(
        load(&store, &expired.token, t1).await,
        "loading an expired session after sync_user",
    );
    assert_eq!(
        listed_ids(&store, &alice, t1).await,
        vec![a1.id, a2.id],
        "after sync_user the listing must hold the user's 2 live sessions, oldest first"
    );
}

// ---------------------------------------------------------------------------
// 9. connections
// ---------------------------------------------------------------------------

/// `connect` registers a connection under a live session (`true`) and
/// `list_connections` shows it with its id, node, session and opening
/// time; connecting to a destroyed, expired or unknown session is `false`
/// and registers nothing.
pub async fn connect_registers_connection<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let alice = unique_user("kim");
    let bob = unique_user("lee");
    let a1 = log_in(&store, &alice, t0).await;
    let a2 = log_in(&store, &alice, t0 + SECOND).await;
    let b1 = log_in(&store, &bob, t0 + 2 * SECOND).await;
    let (mut short, short_token) = login_request(&alice, t0);
    short.session.idle_timeout = 5 * MINUTE;
    let expiring = submit(&store, short, short_token).await;
    let gone = log_in(&store, &alice, t0 + 3 * SECOND).await;
    ok(
        store
            .destroy(&gone.id, EndReason::LoggedOut, t0 + 3 * SECOND)
            .await,
        "destroy",
    );
    let t1 = t0 + 4 * SECOND;
    let until = t1 + HOUR;
    let c1 = connection(&a1.id, "node-a", t1);
    let c2 = connection(&a2.id, "node-b", t1);
    let c3 = connection(&b1.id, "node-a", t1);
    for conn in [&c1, &c2, &c3] {
        assert!(
            connect(&store, conn, until, t1).await,
            "connect to a live session returned false"
        );
    }
    assert_eq!(
        connections(&store, &alice, t1 + SECOND).await,
        sorted(vec![c1.clone(), c2.clone()]),
        "list_connections must show the user's connections exactly as registered"
    );
    assert_eq!(
        connections(&store, &bob, t1 + SECOND).await,
        vec![c3],
        "list_connections must show only that user's connections"
    );
    let to_gone = connection(&gone.id, "node-a", t1);
    assert!(
        !connect(&store, &to_gone, until, t1 + SECOND).await,
        "connect to a destroyed session returned true"
    );
    let never = SessionId::generate(&Tag::for_user(&alice));
    assert!(
        !connect(
            &store,
            &connection(&never, "node-a", t1),
            until,
            t1 + SECOND
        )
        .await,
        "connect to a session that never existed returned true"
    );
    let dead = t0 + 5 * MINUTE;
    assert!(
        !connect(
            &store,
            &connection(&expiring.id, "node-a", dead),
            until,
            dead
        )
        .await,
        "connect to an expired session returned true"
    );
    expect_missing(
        load(&store, &expiring.token, dead).await,
        "loading an expired session after a connect tried to register under it",
    );
    assert_eq!(
        connections(&store, &alice, dead).await,
        sorted(vec![c1, c2]),
        "a refused connect registered a connection"
    );
}

/// A connection whose lease ran out is no longer listed (1 ms before, it
/// is), while its session lives on.
pub async fn connection_lease_runs_out<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("max");
    let member = log_in(&store, &user, t0).await;
    let conn = connection(&member.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + LEASE, t0).await,
        "connect returned false"
    );
    assert_eq!(
        connections(&store, &user, t0 + LEASE - 1).await,
        vec![conn],
        "a connection 1 ms before its lease ends must be listed"
    );
    assert_eq!(
        connections(&store, &user, t0 + LEASE).await,
        Vec::<Connection>::new(),
        "a connection whose lease ran out must not be listed"
    );
    expect_current(
        load(&store, &member.token, t0 + LEASE + 1).await,
        "loading a session whose connection's lease ran out",
    );
}

/// `fetch` with a lease returns the session refreshed (`last_seen` = now,
/// so its idle deadline moves), extends the connection's lease, and for the
/// current token reports no replacement and `known_is_current`.
pub async fn fetch_refreshes_session_and_lease<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("nina");
    let (mut login, token) = login_request(&user, t0);
    login.delta = set(&[("a", "1")]);
    let member = submit(&store, login, token).await;
    let conn = connection(&member.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + LEASE, t0).await,
        "connect returned false"
    );
    let t1 = t0 + LEASE - SECOND;
    let Some(fetched) = fetch(
        &store,
        &member.id,
        Some(&member.token),
        Some((&conn, t1 + LEASE)),
        t1,
    )
    .await
    else {
        panic!("fetch of a live session returned None");
    };
    assert_eq!(
        fetched.record.id, member.id,
        "fetch returned another session"
    );
    assert_eq!(
        fetched.record.last_seen, t1,
        "fetch must refresh last_seen to now"
    );
    assert_eq!(
        fetched.record.data,
        data(&[("a", "1")]),
        "fetch returned other data"
    );
    assert_eq!(
        fetched.replacement, None,
        "fetch with the current token reported a replacement"
    );
    assert!(
        fetched.known_is_current,
        "fetch with the current token: known_is_current must be true"
    );
    assert_eq!(
        connections(&store, &user, t0 + LEASE + SECOND).await,
        vec![conn.clone()],
        "after the original lease ended, a connection whose lease fetch extended must be listed"
    );
    assert_eq!(
        connections(&store, &user, t1 + LEASE).await,
        Vec::<Connection>::new(),
        "a connection must not be listed once the lease fetch set ran out"
    );
    let record = expect_current(
        probe(&store, &member.token, t0 + IDLE + SECOND).await,
        "loading the session past its original idle deadline after a fetch refreshed it",
    );
    assert_eq!(record.last_seen, t1, "the refresh by fetch was not stored");
}

/// After a rotation, `fetch` with the old token as `known` reports the
/// replacement sealed under it and `known_is_current == false`; with the
/// new token, no replacement and `true`; once OJS is over, the old token
/// gets no replacement any more.
pub async fn fetch_follows_rotation<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("otto");
    let member = log_in(&store, &user, t0).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let Some(fetched) = fetch(&store, &member.id, Some(&member.token), None, t1 + SECOND).await
    else {
        panic!("fetch of a live session after a rotation returned None");
    };
    match &fetched.replacement {
        Some(sealed) => opens_to(
            &member.token,
            sealed,
            &new,
            "fetch with the old token as known",
        ),
        None => panic!(
            "fetch with the old token as known, inside OJS: expected a replacement, got None"
        ),
    }
    assert!(
        !fetched.known_is_current,
        "fetch with the old token as known: known_is_current must be false"
    );
    assert_eq!(
        fetched.record.ttg, t1,
        "fetch after a rotation: TTG must be the rotation's now"
    );
    let Some(fetched) = fetch(&store, &member.id, Some(&new), None, t1 + 2 * SECOND).await else {
        panic!("fetch of a live session returned None");
    };
    assert_eq!(
        fetched.replacement, None,
        "fetch with the new token reported a replacement"
    );
    assert!(
        fetched.known_is_current,
        "fetch with the new token: known_is_current must be true"
    );
    let Some(fetched) = fetch(&store, &member.id, None, None, t1 + 2 * SECOND).await else {
        panic!("fetch of a live session returned None");
    };
    assert_eq!(
        fetched.replacement, None,
        "fetch without a known token reported a replacement"
    );
    assert!(
        !fetched.known_is_current,
        "fetch without a known token: known_is_current must be false"
    );
    expect_current(
        load(&store, &new, t1 + 3 * SECOND).await,
        "adopting the replacement",
    );
    let Some(fetched) = fetch(&store, &member.id, Some(&member.token), None, t1 + OJS).await else {
        panic!("fetch of a live session after OJS returned None");
    };
    assert_eq!(
        fetched.replacement, None,
        "fetch with the old token as known after OJS must report no replacement"
    );
    assert!(
        !fetched.known_is_current,
        "fetch with the old token as known after OJS: known_is_current must be false"
    );
}

/// A replacement handed to a live connection (a `fetch` carrying the
/// connection's lease, after the rotation) does not lapse unadopted: the
/// connection holds the session and passes the replacement on itself.
pub async fn live_connection_keeps_replacement<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("pia");
    let member = log_in(&store, &user, t0).await;
    let conn = connection(&member.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + HOUR, t0).await,
        "connect returned false"
    );
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let fetched = fetch(
        &store,
        &member.id,
        Some(&member.token),
        Some((&conn, t1 + HOUR)),
        t1 + SECOND,
    )
    .await;
    assert!(fetched.is_some(), "fetch of a live session returned None");
    expect_current(
        load(&store, &new, t1 + CIJS + MINUTE).await,
        "presenting, after CIJS, a replacement a live connection fetched (it must not lapse under the connection)",
    );
}

/// `disconnect` removes a connection (others stay); disconnecting again,
/// an unknown connection, or under an unknown session is harmless; a late
/// `fetch` carrying the removed connection's lease does not register it
/// again.
pub async fn disconnect_removes_connection<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("quinn");
    let member = log_in(&store, &user, t0).await;
    let c1 = connection(&member.id, "node-a", t0);
    let c2 = connection(&member.id, "node-b", t0);
    assert!(
        connect(&store, &c1, t0 + HOUR, t0).await,
        "connect returned false"
    );
    assert!(
        connect(&store, &c2, t0 + HOUR, t0).await,
        "connect returned false"
    );
    ok(store.disconnect(&member.id, &c1.id).await, "disconnect");
    assert_eq!(
        connections(&store, &user, t0 + SECOND).await,
        vec![c2.clone()],
        "after disconnect of one of two connections, exactly the other must be listed"
    );
    ok(
        store.disconnect(&member.id, &c1.id).await,
        "disconnect of a removed connection",
    );
    ok(
        store.disconnect(&member.id, "no-such-connection").await,
        "disconnect of an unknown connection",
    );
    let never = SessionId::generate(&Tag::random());
    ok(
        store.disconnect(&never, &c2.id).await,
        "disconnect under an unknown session",
    );
    let fetched = fetch(
        &store,
        &member.id,
        None,
        Some((&c1, t0 + 2 * HOUR)),
        t0 + 2 * SECOND,
    )
    .await;
    assert!(fetched.is_some(), "fetch of a live session returned None");
    assert_eq!(
        connections(&store, &user, t0 + 3 * SECOND).await,
        vec![c2],
        "a fetch carrying the lease of a disconnected connection registered it again"
    );
}

/// Ending a session (`destroy`, or `revoke`) removes its connections; a
/// new session of the same user does not inherit them.
pub async fn destroy_removes_connections<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("rosa");
    let s1 = log_in(&store, &user, t0).await;
    let s2 = log_in(&store, &user, t0 + SECOND).await;
    let c1 = connection(&s1.id, "node-a", t0 + SECOND);
    let c2 = connection(&s1.id, "node-b", t0 + SECOND);
    let c3 = connection(&s2.id, "node-a", t0 + SECOND);
    for conn in [&c1, &c2, &c3] {
        assert!(
            connect(&store, conn, t0 + HOUR, t0 + SECOND).await,
            "connect returned false"
        );
    }
    let t1 = t0 + 2 * SECOND;
    ok(
        store.destroy(&s1.id, EndReason::LoggedOut, t1).await,
        "destroy",
    );
    assert_eq!(
        connections(&store, &user, t1).await,
        vec![c3],
        "after destroying a session, its connections are still listed"
    );
    ok(
        store.revoke(&user, &Revoke::One(s2.id.clone()), t1).await,
        "revoke",
    );
    assert_eq!(
        connections(&store, &user, t1).await,
        Vec::<Connection>::new(),
        "after revoking a session, its connections are still listed"
    );
    log_in(&store, &user, t1 + SECOND).await;
    assert_eq!(
        connections(&store, &user, t1 + SECOND).await,
        Vec::<Connection>::new(),
        "a new session of the user lists the connections of ended ones"
    );
}

/// `fetch` of a destroyed, expired or unknown session is `None`, and a
/// fetch with a lease does not revive an expired session.
pub async fn fetch_gone_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("sam");
    let destroyed = log_in(&store, &user, t0).await;
    let expiring = log_in(&store, &user, t0).await;
    let conn = connection(&expiring.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + 2 * IDLE, t0).await,
        "connect returned false"
    );
    ok(
        store.destroy(&destroyed.id, EndReason::LoggedOut, t0).await,
        "destroy",
    );
    assert!(
        fetch(
            &store,
            &destroyed.id,
            Some(&destroyed.token),
            None,
            t0 + SECOND
        )
        .await
        .is_none(),
        "fetch of a destroyed session returned Some"
    );
    let never = SessionId::generate(&Tag::random());
    assert!(
        fetch(&store, &never, None, None, t0 + SECOND)
            .await
            .is_none(),
        "fetch of a session that never existed returned Some"
    );
    let dead = t0 + IDLE;
    assert!(
        fetch(
            &store,
            &expiring.id,
            Some(&expiring.token),
            Some((&conn, dead + HOUR)),
            dead
        )
        .await
        .is_none(),
        "fetch of a session at its idle deadline returned Some"
    );
    expect_missing(
        load(&store, &expiring.token, dead + SECOND).await,
        "loading an expired session after a fetch with a lease",
    );
    assert_eq!(
        listed_ids(&store, &user, dead + SECOND).await,
        Vec::<SessionId>::new(),
        "an expired session is listed after a fetch with a lease"
    );
    assert_eq!(
        connections(&store, &user, dead + SECOND).await,
        Vec::<Connection>::new(),
        "an expired session's connection is listed"
    );
}

// ---------------------------------------------------------------------------
// 10. stale tokens
// ---------------------------------------------------------------------------

/// Reuse of a replaced token: `Grace` throughout OJS (never `Stale` early),
/// `Stale(id)` from then on, repeatably, while the session stays fully live
/// for its new token (load, save, listing, fetch); destroying it with
/// `StaleToken` (the layer's revoke policy) ends it and publishes that
/// reason.
pub async fn stale_token_leaves_session_live<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("tom");
    let (mut login, token) = login_request(&user, t0);
    login.delta = set(&[("a", "1")]);
    let member = submit(&store, login, token).await;
    let old = &member.token;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &member.id, old, t1, "rotating").await;
    expect_current(
        load(&store, &new, t1 + SECOND).await,
        "adopting the replacement",
    );
    expect_grace(
        load(&store, old, t1 + MINUTE).await,
        "loading the old token a minute into OJS (it must not be Stale yet)",
    );
    expect_grace(
        probe(&store, old, t1 + OJS - 1).await,
        "loading the old token 1 ms before OJS ends (it must not be Stale yet)",
    );
    let stale = expect_stale(
        load(&store, old, t1 + OJS).await,
        "loading the old token when OJS ended",
    );
    assert_eq!(stale, member.id, "Stale carries another session's id");
    let t2 = t1 + OJS + MINUTE;
    let stale = expect_stale(load(&store, old, t2).await, "loading the stale token again");
    assert_eq!(stale, member.id, "Stale carries another session's id");
    let record = expect_current(
        load(&store, &new, t2).await,
        "loading the new token after the old one was reported stale",
    );
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "a stale lookup changed the session's data"
    );
    assert!(
        save(&store, &member.id, &set(&[("b", "2")]), t2).await,
        "a save after a stale lookup returned false (the session must stay live)"
    );
    assert_eq!(
        listed_ids(&store, &user, t2).await,
        vec![member.id.clone()],
        "a session is no longer listed after a stale lookup"
    );
    assert!(
        fetch(&store, &member.id, Some(&new), None, t2)
            .await
            .is_some(),
        "fetch of a session after a stale lookup returned None"
    );
    let mut events = store.subscribe();
    assert!(
        ok(
            store.destroy(&stale, EndReason::StaleToken, t2).await,
            "destroy"
        ),
        "destroying the session a stale token named returned false"
    );
    expect_missing(
        load(&store, old, t2).await,
        "loading the stale token after its session was destroyed",
    );
    expect_missing(
        load(&store, &new, t2).await,
        "loading the new token after its session was destroyed",
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&member.id),
        EndReason::StaleToken,
        "a session destroyed for a stale token",
    )
    .await;
}

/// A login applies its delta's settings (idle timeout, label) to the new
/// session, not only its data.
pub async fn login_applies_delta_settings<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("lena");
    let (mut login, token) = login_request(&user, t0);
    login.delta = Delta {
        idle_timeout: Some(2 * IDLE),
        label: Some("laptop".to_owned()),
        ..Delta::default()
    };
    let member = submit(&store, login, token).await;
    let listed = list(&store, &user, t0).await;
    assert_eq!(listed.len(), 1, "one session listed after the login");
    assert_eq!(
        listed[0].label.as_deref(),
        Some("laptop"),
        "the login's delta label"
    );
    assert_eq!(
        listed[0].idle_deadline,
        t0 + 2 * IDLE,
        "the login's delta idle timeout"
    );
    expect_current(
        probe(&store, &member.token, t0 + IDLE + MINUTE).await,
        "past the default idle timeout, inside the delta's",
    );
}

/// A replacement that lapsed unadopted is not handed out by `fetch` (without
/// a live connection's lease), and the lapsed token is not current.
pub async fn fetch_withholds_lapsed_replacement<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("quin");
    let member = log_in(&store, &user, t0).await;
    let t1 = t0 + MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let t2 = t1 + CIJS;
    let Some(fetched) = fetch(&store, &member.id, Some(&member.token), None, t2).await else {
        panic!("fetch inside the old token's grace window returned None");
    };
    assert_eq!(
        fetched.replacement, None,
        "fetch after the replacement lapsed must not hand it out"
    );
    let Some(fetched) = fetch(&store, &member.id, Some(&new), None, t2).await else {
        panic!("fetch inside the old token's grace window returned None");
    };
    assert!(
        !fetched.known_is_current,
        "a lapsed replacement must not count as the current token"
    );
    expect_missing(
        load(&store, &new, t2).await,
        "loading the lapsed replacement",
    );
}

/// `destroy` of a session whose deadline passed (but which a store may still
/// hold) returns `false`, like any missing session.
pub async fn destroy_of_expired_session_is_false<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, token) = create(&store, t0, &[("k", "1")]).await;
    assert!(
        !ok(
            store.destroy(&id, EndReason::LoggedOut, t0 + IDLE).await,
            "destroy"
        ),
        "destroying a session past its idle deadline returned true"
    );
    expect_missing(
        load(&store, &token, t0 + IDLE).await,
        "loading it afterwards",
    );
}

/// The longest timeouts the layer accepts ([`MAX_DURATION`](crate::MAX_DURATION))
/// work like any other: stored exactly, deadlines computed exactly.
pub async fn longest_timeouts_stay_exact<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let longest = crate::clock::ms(crate::MAX_DURATION);
    let (mut new, token) = anonymous(t0, &[("k", "1")]);
    new.idle_timeout = longest;
    new.absolute_deadline = Some(t0 + longest);
    ok(store.create(&new).await, "create");
    let record = expect_current(
        probe(&store, &token, t0 + longest - 1).await,
        "loading just before the longest idle deadline",
    );
    assert_eq!(record.idle_timeout, longest, "the idle timeout read back");
    assert_eq!(
        record.absolute_deadline,
        Some(t0 + longest),
        "the absolute deadline read back"
    );
    assert!(
        save(&store, &new.id, &set(&[("k", "2")]), t0 + 1).await,
        "a save on a session with the longest timeouts"
    );
    expect_missing(
        probe(&store, &token, t0 + longest).await,
        "loading at the longest idle deadline",
    );
}

/// An empty label and an empty user id are values like any other, not
/// "none".
pub async fn empty_label_and_user_id_are_kept<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (mut login, token) = login_request("", t0);
    login.session.label = Some(String::new());
    let member = submit(&store, login, token).await;
    let listed = list(&store, "", t0).await;
    assert_eq!(listed.len(), 1, "the session of the user \"\" is listed");
    assert_eq!(listed[0].label.as_deref(), Some(""), "an empty label");
    let record = expect_current(load(&store, &member.token, t0).await, "loading it");
    assert_eq!(
        record.user.map(|u| u.id),
        Some(String::new()),
        "the user \"\" is bound"
    );
}

/// A session bound to a user must carry that user's tag (so that a user's
/// sessions and index share a partition); `create` and `login` refuse one
/// that does not, storing nothing.
pub async fn user_sessions_must_carry_the_user_tag<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("tess");
    let (mut new, token) = anonymous(t0, &[]);
    new.user = Some(bound(&user, 1));
    assert!(
        store.create(&new).await.is_err(),
        "create of a user's session under a random tag must fail"
    );
    expect_missing(
        load(&store, &token, t0).await,
        "loading the refused session",
    );
    let (mut login, token) = login_request(&user, t0);
    login.session.id = SessionId::generate(&Tag::random());
    assert!(
        store.login(&login).await.is_err(),
        "login of a session under a random tag must fail"
    );
    expect_missing(load(&store, &token, t0).await, "loading the refused login");
    assert!(list(&store, &user, t0).await.is_empty(), "nothing listed");
}

/// A per-user limit of zero keeps the new session (it is treated as one).
pub async fn a_limit_of_zero_keeps_the_new_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("zoe");
    let first = log_in(&store, &user, t0).await;
    let (mut login, token) = login_request(&user, t0 + SECOND);
    login.max_sessions = Some(0);
    let outcome = ok(store.login(&login).await, "login");
    assert_eq!(
        outcome.evicted,
        vec![first.id],
        "the older session is evicted"
    );
    expect_current(load(&store, &token, t0 + SECOND).await, "the new session");
}
