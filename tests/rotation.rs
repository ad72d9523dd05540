//! Automatic token regeneration (TTG/SFR/OJS/CIJS) through the real layer,
//! with a manual clock, on every store: in memory, on a Redis server and on
//! a Redis Cluster (`memory::*`, `redis::*`, `cluster::*`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing;
use axum::Router;
use http::{Request, StatusCode};
use sessionkit::Regeneration;
use sessionkit::{ManualClock, Session, SessionLayer, SessionStore, StaleTokenPolicy};
use support::stores::{on_every_store, Backend, TestStore};
use support::*;

const SFR: Duration = Duration::from_secs(600);
const OJS: Duration = Duration::from_secs(120);
const CIJS: Duration = Duration::from_secs(60);

on_every_store! {
    a_due_token_is_replaced_and_the_session_stays_the_same,
    rotation_keeps_the_user,
    inside_the_grace_window_old_and_new_tokens_share_one_session,
    a_client_holding_the_replacement_keeps_its_session_however_long_it_pauses,
    an_unanswered_rotation_keeps_the_session_until_its_idle_timeout,
    a_user_changed_elsewhere_gets_a_new_token_on_its_next_request,
    after_the_grace_window_the_old_token_is_dead,
    cijs_counts_from_the_last_time_the_replacement_was_sent,
    a_lapsed_replacement_is_replaced_by_a_fresh_one_and_never_works_again,
    privilege_changes_never_use_the_grace_window,
    rotation_costs_no_round_trip_when_not_due_and_one_when_due,
    a_stale_token_can_revoke_the_session,
    header_clients_get_the_replacement_in_the_header;
    parallel: fifty_parallel_requests_with_a_due_token_get_the_same_replacement,
}

struct Harness {
    app: Router,
    clock: ManualClock,
    /// Counts the calls the layer makes to `stored.store`.
    store: Counting<Arc<dyn SessionStore>>,
    stored: TestStore,
}

async fn harness(backend: Backend, policy: StaleTokenPolicy) -> Harness {
    let clock = ManualClock::new();
    let stored = TestStore::new(backend, &clock).await;
    let store = Counting::new(stored.store.clone());
    let layer = SessionLayer::builder(store.clone())
        .clock(clock.clone())
        .regeneration(Regeneration::every(SFR).grace(OJS).resend_for(CIJS))
        .on_stale_token(policy)
        .build();
    let app = routes::basic(user(1, "ada"))
        .route(
            "/set/{key}",
            routing::post(
                |axum::extract::Path(key): axum::extract::Path<String>, s: Session| async move {
                    s.insert(&key, true)?;
                    Ok::<_, sessionkit::Error>("set")
                },
            ),
        )
        .route(
            "/state",
            routing::get(|s: Session| async move {
                let mut keys = s.keys()?;
                keys.sort();
                let n: u64 = s.get("n").ok().flatten().unwrap_or(0);
                let ttg = s.ttg();
                let state = serde_json::json!({
                    "id": s.id().map(|i| i.to_string()),
                    "n": n,
                    "keys": keys,
                    "user": s.user_id(),
                    "ttg": ttg,
                })
                .to_string();
                Ok::<_, sessionkit::Error>(state)
            }),
        )
        .layer(layer);
    Harness {
        app,
        clock,
        store,
        stored,
    }
}

impl Harness {
    async fn session(&self) -> String {
        send(&self.app, routing_post("/count", None))
            .await
            .cookie()
            .unwrap()
    }
    async fn state(&self, token: &str) -> (serde_json::Value, Option<String>) {
        let res = send(&self.app, get("/state", Some(token))).await;
        (res.json(), res.cookie())
    }
    fn now_ms(&self) -> u64 {
        use sessionkit::Clock;
        self.clock.now()
    }
}

fn routing_post(uri: &str, token: Option<&str>) -> Request<Body> {
    post(uri, token)
}

async fn a_due_token_is_replaced_and_the_session_stays_the_same(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.send_login_free_writes(&t1).await;
    let (before, none) = h.state(&t1).await;
    assert!(none.is_none(), "not due yet: no new token");

    h.clock.advance(SFR);
    let (after, t2) = h.state(&t1).await;
    let t2 = t2.expect("a due token is replaced on its next use");
    assert_ne!(t2, t1);
    assert_eq!(after["id"], before["id"], "same session");
    assert_eq!(after["keys"], before["keys"], "same data");
    assert_eq!(after["ttg"], h.now_ms(), "TTG of the new token is now");

    let (through_new, resent) = h.state(&t2).await;
    assert_eq!(through_new["id"], before["id"]);
    assert!(resent.is_none(), "the adopted replacement is not re-sent");
}

impl Harness {
    async fn send_login_free_writes(&self, token: &str) {
        for key in ["a", "b"] {
            let res = send(&self.app, post(&format!("/set/{key}"), Some(token))).await;
            assert_eq!(res.status, StatusCode::OK);
        }
    }
}

async fn rotation_keeps_the_user(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = send(&h.app, post("/login", None)).await.cookie().unwrap();
    h.clock.advance(SFR);
    let (state, t2) = h.state(&t1).await;
    assert!(t2.is_some());
    assert_eq!(state["user"], "1");
}

async fn fifty_parallel_requests_with_a_due_token_get_the_same_replacement(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR + Duration::from_secs(1));
    let requests = (0..50).map(|_| {
        let app = h.app.clone();
        let t1 = t1.clone();
        tokio::spawn(async move { send(&app, get("/state", Some(&t1))).await })
    });
    let mut replacements = Vec::new();
    for r in requests {
        let res = r.await.unwrap();
        assert_eq!(res.status, StatusCode::OK);
        replacements.push(
            res.cookie()
                .expect("every response carries the replacement"),
        );
    }
    replacements.dedup();
    assert_eq!(replacements.len(), 1, "single flight: one replacement");
    assert_ne!(replacements[0], t1);
    assert_eq!(h.stored.tokens().await, 2, "old + new token, nothing else");
}

async fn inside_the_grace_window_old_and_new_tokens_share_one_session(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR);
    let (_, t2) = h.state(&t1).await;
    let t2 = t2.unwrap();

    // A write through the old token is visible through the new one...
    let res = send(&h.app, post("/set/old", Some(&t1))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.cookie().as_deref(),
        Some(t2.as_str()),
        "replacement re-sent"
    );
    // ...and the other way round. Presenting t2 adopts it: old-token
    // requests still in flight are served, with nothing to hand out (the
    // client holds t2, and the store no longer keeps it sealed).
    send(&h.app, post("/set/new", Some(&t2))).await;
    h.clock.advance(Duration::from_secs(30));
    let (via_old, resent) = h.state(&t1).await;
    assert_eq!(
        resent, None,
        "no token for an old-token request once t2 is adopted"
    );
    let (via_new, _) = h.state(&t2).await;
    assert_eq!(via_old["keys"], via_new["keys"]);
    assert_eq!(via_old["keys"], serde_json::json!(["n", "new", "old"]));
}

async fn after_the_grace_window_the_old_token_is_dead(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR);
    let t2 = h.state(&t1).await.1.unwrap();
    h.state(&t2).await; // the client adopts it
    h.clock.advance(OJS);
    let res = send(&h.app, get("/state", Some(&t1))).await;
    assert_eq!(
        res.json()["id"],
        serde_json::Value::Null,
        "treated as unknown"
    );
    assert!(res.cookie().is_none(), "and not adopted");
    assert_eq!(h.state(&t2).await.0["n"], 1, "the session lives on");
}

async fn cijs_counts_from_the_last_time_the_replacement_was_sent(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR);
    let t2 = h.state(&t1).await.1.unwrap();
    // The client lost t2 and comes back with t1: t2 is sent again, and its
    // CIJS starts over.
    h.clock.advance(CIJS - Duration::from_secs(1));
    assert_eq!(h.state(&t1).await.1.as_deref(), Some(t2.as_str()));
    // Past CIJS from the first sending, inside CIJS from the second: valid.
    h.clock.advance(Duration::from_secs(30));
    assert_eq!(h.state(&t2).await.0["n"], 1);
}

async fn a_lapsed_replacement_is_replaced_by_a_fresh_one_and_never_works_again(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR);
    let t2 = h.state(&t1).await.1.unwrap();
    // t2 is never presented; CIJS later it lapses. t1 is still inside OJS, so
    // it mints a fresh replacement.
    h.clock.advance(CIJS);
    let (state, t3) = h.state(&t1).await;
    let t3 = t3.expect("a fresh replacement");
    assert_ne!(t3, t2);
    assert_eq!(state["n"], 1);
    assert_eq!(h.state(&t2).await.0["id"], serde_json::Value::Null);
    assert_eq!(h.state(&t3).await.0["n"], 1);
    assert_eq!(h.state(&t2).await.0["id"], serde_json::Value::Null);
    assert_eq!(h.stored.tokens().await, 2, "t1 (in grace) and t3 only");
}

async fn a_client_holding_the_replacement_keeps_its_session_however_long_it_pauses(
    backend: Backend,
) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR);
    // The rotating request's response reaches the client, which then makes
    // no request for far longer than CIJS and OJS (but less than the idle
    // timeout and SFR).
    let t2 = h.state(&t1).await.1.expect("the replacement");
    h.clock.advance(SFR - Duration::from_secs(1));
    let (state, resent) = h.state(&t2).await;
    assert_eq!(state["n"], 1, "the session survived the pause");
    assert_eq!(resent, None, "t2 is simply current");
    // And it is an ordinary token from then on: due in its turn.
    h.clock.advance(Duration::from_secs(1));
    let (state, t3) = h.state(&t2).await;
    assert_eq!(state["n"], 1);
    assert!(t3.is_some_and(|t3| t3 != t2));
}

async fn an_unanswered_rotation_keeps_the_session_until_its_idle_timeout(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR);
    let t2 = h.state(&t1).await.1.expect("the replacement");
    // Neither token is used again: the session lives as long as its idle
    // timeout allows, not OJS or CIJS.
    h.clock
        .advance(Duration::from_secs(30 * 60) - Duration::from_secs(1));
    assert_eq!(h.stored.sessions().await, 1);
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.state(&t2).await.0["id"],
        serde_json::Value::Null,
        "idled out"
    );
    if backend == Backend::Memory {
        // On Redis the keys linger until their real TTL (see
        // `once_sessions_expire_nothing_is_left` in tests/redis.rs).
        let memory = h.stored.memory();
        memory.purge_expired();
        assert_eq!(h.stored.sessions().await, 0, "the session is gone");
        assert_eq!(memory.footprint(), (0, 0, 0));
    }
}

async fn a_user_changed_elsewhere_gets_a_new_token_on_its_next_request(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    let res = send(&h.app, post("/login", Some(&t1))).await;
    let t2 = res.cookie().expect("login token");
    // Not due for regeneration...
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.state(&t2).await.1, None);
    // ...until the user is changed through the manager: a privilege change.
    let manager = sessionkit::SessionManager::new(h.stored.store.clone());
    let mut promoted = user(1, "ada");
    promoted.role = "admin".into();
    assert_eq!(manager.sync_user(&promoted).await.unwrap(), 1);
    let (state, t3) = h.state(&t2).await;
    let t3 = t3.expect("a new token after the user changed");
    assert_ne!(t3, t2);
    assert_eq!(state["user"], "1");
    // Once, not on every request.
    assert_eq!(h.state(&t3).await.1, None);
}

async fn privilege_changes_never_use_the_grace_window(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR);
    let t2 = h.state(&t1).await.1.unwrap();
    // A login inside the old token's grace window kills both tokens at once.
    let t3 = send(&h.app, post("/login", Some(&t2)))
        .await
        .cookie()
        .unwrap();
    assert_eq!(h.state(&t1).await.0["id"], serde_json::Value::Null);
    assert_eq!(h.state(&t2).await.0["id"], serde_json::Value::Null);
    // Same for an explicit regenerate.
    let t4 = send(&h.app, post("/regenerate", Some(&t3)))
        .await
        .cookie()
        .unwrap();
    assert_eq!(h.state(&t3).await.0["id"], serde_json::Value::Null);
    assert_eq!(h.state(&t4).await.0["user"], "1");
}

async fn rotation_costs_no_round_trip_when_not_due_and_one_when_due(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    let (loads, writes) = h.store.calls();
    h.state(&t1).await;
    assert_eq!(
        h.store.calls(),
        (loads + 1, writes),
        "not due: the load only"
    );
    h.clock.advance(SFR);
    h.state(&t1).await;
    assert_eq!(
        h.store.calls(),
        (loads + 2, writes + 1),
        "due: load + rotate"
    );
}

async fn a_stale_token_can_revoke_the_session(backend: Backend) {
    for policy in [StaleTokenPolicy::Ignore, StaleTokenPolicy::Revoke] {
        let h = harness(backend, policy).await;
        let t1 = h.session().await;
        h.clock.advance(SFR);
        let t2 = h.state(&t1).await.1.unwrap();
        h.state(&t2).await;
        h.clock.advance(OJS + Duration::from_secs(1));
        assert_eq!(h.state(&t1).await.0["id"], serde_json::Value::Null);
        let alive = h.state(&t2).await.0["n"] == 1;
        assert_eq!(alive, policy == StaleTokenPolicy::Ignore, "{policy:?}");
    }
}

async fn header_clients_get_the_replacement_in_the_header(backend: Backend) {
    let h = harness(backend, StaleTokenPolicy::Ignore).await;
    let t1 = h.session().await;
    h.clock.advance(SFR);
    let req = Request::get("/state")
        .header("x-session-id", &t1)
        .body(Body::empty())
        .unwrap();
    let res = send(&h.app, req).await;
    let t2 = res
        .header("x-session-id")
        .expect("replacement in the header");
    assert_ne!(t2, t1);
    assert!(res.set_cookie(COOKIE).is_none());
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
}
