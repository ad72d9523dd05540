//! Concurrency stress through the real layer, on every store: 64 clients
//! share one session (one browser's cookie jar, 64 tabs), each writing keys
//! of its own, interleaved with reads, while the clock makes the token due
//! for rotation round after round; then one logout lands in the middle of a
//! last burst of writes.
//!
//! Each client writes one key of its own, `c<i>`, with a sequence number
//! that grows with every write, so a lost update shows as an older number.
//!
//! What must hold: every request is answered 200 and sees the one session;
//! every request that carried an old token and got a token back got the one
//! replacement of that rotation; every write acknowledged before the logout
//! was sent is in the session the logout ended (its key holds that number or
//! a later one); nothing written after the logout brings that session back.
//!
//! Bounded: 64 clients, 3 rotation rounds of 6 requests each, then 4
//! writes each around the logout (1,500 requests), on a logical clock.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::routing;
use axum::Router;
use http::StatusCode;
use sessionkit::{ManualClock, Regeneration, Session, SessionLayer};
use support::stores::{on_every_store, Backend, TestStore};
use support::*;

const CLIENTS: usize = 64;
const ROUNDS: usize = 3;
const PER_ROUND: usize = 6;
const LAST_WRITES: usize = 4;
const SFR: Duration = Duration::from_secs(600);
const OJS: Duration = Duration::from_secs(120);
const CIJS: Duration = Duration::from_secs(60);

on_every_store! {
    ;
    parallel: sixty_four_clients_on_one_session_keep_every_acknowledged_write_through_rotations_and_a_logout,
}

fn app(store: &TestStore, clock: &ManualClock) -> Router {
    let layer = SessionLayer::builder(store.store.clone())
        .clock(clock.clone())
        .regeneration(Regeneration::every(SFR).grace(OJS).resend_for(CIJS))
        // This is about what concurrent requests keep, not about latency
        // (tests/faults_kill.rs holds the timeouts): a 2-core machine busy
        // with other builds can starve 64 requests in flight for seconds.
        .store_timeout(Duration::from_secs(20))
        .build();
    Router::new()
        .route(
            "/set/{key}/{seq}",
            routing::post(
                |Path((key, seq)): Path<(String, u64)>, s: Session| async move {
                    s.insert(&key, seq)?;
                    Ok::<_, sessionkit::Error>("set")
                },
            ),
        )
        .route(
            "/state",
            routing::get(|s: Session| async move {
                let mut keys = BTreeMap::new();
                for key in s.keys()? {
                    let seq: Option<u64> = s.get(&key)?;
                    keys.insert(key, seq);
                }
                let id = s.id().map(|i| i.to_string());
                Ok::<_, sessionkit::Error>(
                    serde_json::json!({ "id": id, "keys": keys }).to_string(),
                )
            }),
        )
        .route(
            "/logout",
            routing::post(|s: Session| async move {
                // What the logout ends: the keys the session held then.
                let mut ended = BTreeMap::new();
                for key in s.keys()? {
                    let seq: Option<u64> = s.get(&key)?;
                    ended.insert(key, seq);
                }
                s.logout().await?;
                Ok::<_, sessionkit::Error>(serde_json::json!(ended).to_string())
            }),
        )
        .layer(layer)
}

/// One browser: the cookie jar every tab reads and updates, and what was
/// seen, for the checks at the end.
#[derive(Default)]
struct Browser {
    jar: Mutex<String>,
    /// Every token handed out to a request, by the token the request carried.
    handed: Mutex<HashMap<String, BTreeSet<String>>>,
    /// The highest sequence number acknowledged (200) for each key.
    acked: Mutex<BTreeMap<String, u64>>,
    /// Every token the session had.
    lineage: Mutex<BTreeSet<String>>,
}

impl Browser {
    fn token(&self) -> String {
        self.jar.lock().unwrap().clone()
    }

    /// Sends a request with the jar's token and keeps what comes back.
    async fn send(&self, app: &Router, method: &str, uri: &str) -> Reply {
        let presented = self.token();
        let reply = send(app, request(method, uri, Some(&presented))).await;
        if let Some(token) = reply.cookie() {
            self.handed
                .lock()
                .unwrap()
                .entry(presented)
                .or_default()
                .insert(token.clone());
            *self.jar.lock().unwrap() = token;
        }
        reply
    }

    async fn write(&self, app: &Router, key: &str, seq: u64) -> StatusCode {
        let reply = self.send(app, "POST", &format!("/set/{key}/{seq}")).await;
        if reply.status == StatusCode::OK {
            let mut acked = self.acked.lock().unwrap();
            let last = acked.entry(key.to_owned()).or_default();
            *last = (*last).max(seq);
        }
        reply.status
    }
}

async fn sixty_four_clients_on_one_session_keep_every_acknowledged_write_through_rotations_and_a_logout(
    backend: Backend,
) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let app = app(&store, &clock);
    let browser = Arc::new(Browser::default());

    let first = send(&app, post("/set/start/0", None)).await;
    assert_eq!(first.status, StatusCode::OK);
    let t0 = first.cookie().expect("a new session gets a token");
    *browser.jar.lock().unwrap() = t0.clone();
    browser.lineage.lock().unwrap().insert(t0);
    let state = send(&app, get("/state", Some(&browser.token()))).await;
    let id = state.json()["id"]
        .as_str()
        .expect("a session id")
        .to_owned();

    for round in 0..ROUNDS {
        // The jar's token is now due: the round's first requests rotate it.
        clock.advance(SFR);
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let (app, browser, id) = (app.clone(), browser.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                for j in 0..PER_ROUND {
                    if j % 2 == 0 {
                        let seq = (round * PER_ROUND + j) as u64;
                        let status = browser.write(&app, &format!("c{client}"), seq).await;
                        assert_eq!(status, StatusCode::OK, "client {client}, write {seq}");
                    } else {
                        let reply = browser.send(&app, "GET", "/state").await;
                        assert_eq!(reply.status, StatusCode::OK);
                        assert_eq!(
                            reply.json()["id"],
                            id.as_str(),
                            "client {client} lost the session"
                        );
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("a client panicked");
        }
        let handed = browser.handed.lock().unwrap();
        let mut lineage = browser.lineage.lock().unwrap();
        let new: BTreeSet<String> = handed
            .iter()
            .filter(|(presented, _)| lineage.contains(*presented))
            .flat_map(|(_, tokens)| tokens.iter().cloned())
            .filter(|t| !lineage.contains(t))
            .collect();
        assert_eq!(
            new.len(),
            1,
            "round {round}: one rotation, one replacement, got {new:?}"
        );
        lineage.extend(new);
    }
    for (presented, tokens) in browser.handed.lock().unwrap().iter() {
        assert_eq!(
            tokens.len(),
            1,
            "{presented:.8}… got {} replacements",
            tokens.len()
        );
    }

    // The last burst: every client writes; client 0 logs out halfway.
    type Ended = (BTreeMap<String, u64>, BTreeMap<String, Option<u64>>);
    let logged_out: Arc<Mutex<Option<Ended>>> = Arc::default();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (app, browser, logged_out) = (app.clone(), browser.clone(), logged_out.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..LAST_WRITES {
                if client == 0 && j == LAST_WRITES / 2 {
                    let before = browser.acked.lock().unwrap().clone();
                    let reply = browser.send(&app, "POST", "/logout").await;
                    assert_eq!(reply.status, StatusCode::OK);
                    let ended = serde_json::from_str(&reply.body).expect("keys");
                    *logged_out.lock().unwrap() = Some((before, ended));
                }
                let seq = (ROUNDS * PER_ROUND + j) as u64;
                let status = browser.write(&app, &format!("c{client}"), seq).await;
                assert_eq!(status, StatusCode::OK);
            }
        }));
    }
    for task in tasks {
        task.await.expect("a client panicked");
    }
    let (before, ended) = logged_out.lock().unwrap().take().expect("the logout ran");
    let lost: Vec<_> = before
        .iter()
        .filter(|(key, seq)| ended.get(*key).copied().flatten() < Some(**seq))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged before the logout but lost: {lost:?}"
    );
    assert_eq!(before.len(), CLIENTS, "every client's key");

    // Nothing brings the ended session back: none of its tokens finds it,
    // and the session the jar holds now is a new one without its keys.
    let lineage = browser.lineage.lock().unwrap().clone();
    for token in lineage.iter().chain([&browser.token()]) {
        let state = send(&app, get("/state", Some(token))).await;
        assert_eq!(state.status, StatusCode::OK);
        assert_ne!(
            state.json()["id"],
            id.as_str(),
            "the logged-out session came back"
        );
        // A new session holds only writes sent after the logout: numbers
        // above what each client had acknowledged before it.
        let keys: BTreeMap<String, Option<u64>> =
            serde_json::from_value(state.json()["keys"].clone()).unwrap_or_default();
        for (key, seq) in &keys {
            assert!(
                *seq > before.get(key).copied(),
                "{key} = {seq:?} came back from the ended session"
            );
        }
    }
}
