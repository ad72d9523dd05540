//! A user's sessions through the layer: listing, revoking, logging out
//! everywhere, the per-user limit and pushing user changes, on every store:
//! in memory, on a Redis server and on a Redis Cluster (`memory::*`,
//! `redis::*`, `cluster::*`).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::Path;
use axum::routing;
use axum::Router;
use http::StatusCode;
use sessionkit::{ManualClock, Session, SessionId, SessionLayer, SessionManager};
use support::stores::{on_every_store, Backend, TestStore};
use support::*;

on_every_store! {
    the_active_devices_page,
    log_out_everywhere_and_everywhere_else,
    the_oldest_session_goes_beyond_the_limit,
    sync_user_reaches_every_device_and_leaves_data_alone,
    a_revoked_session_is_dead_on_every_server_sharing_the_store,
    expiry_empties_the_index,
    logging_in_as_another_user_carries_nothing_over,
    a_user_keeps_at_most_a_hundred_sessions_by_default;
    parallel: logins_racing_log_out_everywhere_leave_only_listed_sessions_alive,
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/login/{id}",
            routing::post(|Path(id): Path<u64>, s: Session| async move {
                s.insert("cart", vec!["book"])?;
                s.login(&user(id, &format!("user{id}"))).await?;
                s.set_label(format!("device of {id}"))?;
                Ok::<_, sessionkit::Error>(s.id().map(|i| i.to_string()).unwrap_or_default())
            }),
        )
        .route(
            "/mfa",
            routing::post(|s: Session| async move {
                s.insert("mfa_ok", true)?;
                Ok::<_, sessionkit::Error>("ok")
            }),
        )
        .route(
            "/me",
            routing::get(|s: Session| async move {
                let u: Option<User> = s.user()?;
                let cart: Option<Vec<String>> = s.get("cart")?;
                let mfa: Option<bool> = s.get("mfa_ok")?;
                Ok::<_, sessionkit::Error>(
                    serde_json::json!({
                        "id": s.id().map(|i| i.to_string()),
                        "user": u,
                        "cart": cart,
                        "mfa_ok": mfa,
                    })
                    .to_string(),
                )
            }),
        )
        .route(
            "/others",
            routing::get(|s: Session| async move {
                let ids: Vec<String> = s
                    .other_sessions()
                    .await?
                    .into_iter()
                    .map(|i| i.id.to_string())
                    .collect();
                Ok::<_, sessionkit::Error>(ids.join(","))
            }),
        )
        .route(
            "/all",
            routing::get(|s: Session| async move {
                let list = s.sessions().await?;
                Ok::<_, sessionkit::Error>(serde_json::to_string(&list).unwrap())
            }),
        )
        .route(
            "/revoke/{id}",
            routing::post(|Path(id): Path<String>, s: Session| async move {
                let Some(id) = SessionId::parse(&id) else {
                    return Ok::<_, sessionkit::Error>(StatusCode::NOT_FOUND);
                };
                Ok(if s.revoke(&id).await? {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::NOT_FOUND
                })
            }),
        )
        .route(
            "/everywhere",
            routing::post(|s: Session| async move {
                Ok::<_, sessionkit::Error>(s.logout_everywhere().await?.to_string())
            }),
        )
        .route(
            "/others",
            routing::delete(|s: Session| async move {
                Ok::<_, sessionkit::Error>(s.logout_others().await?.to_string())
            }),
        )
        .layer(layer)
}

struct Harness {
    app: Router,
    manager: SessionManager,
    clock: ManualClock,
    store: TestStore,
}

async fn harness(backend: Backend, max: Option<usize>) -> Harness {
    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let mut b = SessionLayer::builder(store.store.clone()).clock(clock.clone());
    if let Some(max) = max {
        b = b.max_sessions_per_user(max);
    }
    let layer = b.build();
    Harness {
        manager: layer.manager(),
        app: app(layer),
        clock,
        store,
    }
}

impl Harness {
    /// Logs user `id` in on a new device: (token, session id).
    async fn login(&self, id: u64) -> (String, String) {
        let res = send(&self.app, post(&format!("/login/{id}"), None)).await;
        assert_eq!(res.status, StatusCode::OK);
        (res.cookie().unwrap(), res.body)
    }
    async fn me(&self, token: &str) -> serde_json::Value {
        send(&self.app, get("/me", Some(token))).await.json()
    }
}

async fn the_active_devices_page(backend: Backend) {
    let h = harness(backend, None).await;
    let (phone, phone_id) = h.login(1).await;
    h.clock.advance(Duration::from_secs(1));
    let (laptop, laptop_id) = h.login(1).await;
    let (_, bob_id) = h.login(2).await;

    let others = send(&h.app, get("/others", Some(&phone))).await.body;
    assert_eq!(others, laptop_id, "the other device, not bob's");
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&send(&h.app, get("/all", Some(&phone))).await.body).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["id"], phone_id, "oldest first");
    assert_eq!(all[0]["label"], "device of 1");
    assert!(all[0]["idle_deadline"].as_u64() > all[0]["last_seen"].as_u64());

    // Bob's session cannot be revoked from alice's device.
    let res = send(&h.app, post(&format!("/revoke/{bob_id}"), Some(&phone))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(h.manager.list("2").await.unwrap().len(), 1);

    // Revoking the laptop from the phone: dead on its next request.
    let res = send(&h.app, post(&format!("/revoke/{laptop_id}"), Some(&phone))).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(h.me(&laptop).await["user"], serde_json::Value::Null);
    assert_eq!(h.me(&phone).await["user"]["id"], 1);
}

async fn log_out_everywhere_and_everywhere_else(backend: Backend) {
    let h = harness(backend, None).await;
    let (a, _) = h.login(1).await;
    let (b, _) = h.login(1).await;
    let (c, _) = h.login(1).await;
    let res = send(&h.app, request("DELETE", "/others", Some(&a))).await;
    assert_eq!(res.body, "2");
    assert_eq!(h.me(&a).await["user"]["id"], 1);
    assert_eq!(h.me(&b).await["user"], serde_json::Value::Null);
    assert_eq!(h.me(&c).await["user"], serde_json::Value::Null);

    let (_, _) = h.login(1).await;
    let res = send(&h.app, post("/everywhere", Some(&a))).await;
    assert_eq!(res.body, "2");
    assert_eq!(
        res.set_cookie(COOKIE).unwrap().value(),
        "",
        "cookie expired"
    );
    assert_eq!(h.me(&a).await["user"], serde_json::Value::Null);
    assert!(h.manager.list("1").await.unwrap().is_empty());
}

async fn the_oldest_session_goes_beyond_the_limit(backend: Backend) {
    let h = harness(backend, Some(2)).await;
    let (first, _) = h.login(1).await;
    h.clock.advance(Duration::from_secs(1));
    let (second, _) = h.login(1).await;
    h.clock.advance(Duration::from_secs(1));
    let (third, _) = h.login(1).await;
    assert_eq!(
        h.me(&first).await["user"],
        serde_json::Value::Null,
        "oldest revoked"
    );
    assert_eq!(h.me(&second).await["user"]["id"], 1);
    assert_eq!(h.me(&third).await["user"]["id"], 1);
    assert_eq!(h.manager.list("1").await.unwrap().len(), 2);
    // Other users are not affected.
    h.login(2).await;
    assert_eq!(h.manager.list("1").await.unwrap().len(), 2);
}

async fn sync_user_reaches_every_device_and_leaves_data_alone(backend: Backend) {
    let h = harness(backend, None).await;
    let (a, _) = h.login(1).await;
    let (b, _) = h.login(1).await;
    let (bob, _) = h.login(2).await;
    let mut promoted = user(1, "user1");
    promoted.role = "admin".into();
    assert_eq!(h.manager.sync_user(&promoted).await.unwrap(), 2);
    for token in [&a, &b] {
        let me = h.me(token).await;
        assert_eq!(me["user"]["role"], "admin");
        assert_eq!(me["cart"], serde_json::json!(["book"]), "data untouched");
    }
    assert_eq!(h.me(&bob).await["user"]["role"], "member");
}

async fn a_revoked_session_is_dead_on_every_server_sharing_the_store(backend: Backend) {
    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let server_a = app(SessionLayer::builder(store.store.clone())
        .clock(clock.clone())
        .build());
    // On Redis, server B has a connection of its own.
    let server_b = SessionLayer::builder(store.another_client().await)
        .clock(clock.clone())
        .build();
    let manager_b = server_b.manager();
    let server_b = app(server_b);
    let res = send(&server_a, post("/login/9", None)).await;
    let token = res.cookie().unwrap();
    let id = SessionId::parse(&res.body).unwrap();
    assert_eq!(
        send(&server_b, get("/me", Some(&token))).await.json()["user"]["id"],
        9
    );
    assert!(manager_b.revoke("9", &id).await.unwrap());
    assert_eq!(
        send(&server_a, get("/me", Some(&token))).await.json()["user"],
        serde_json::Value::Null
    );
}

async fn expiry_empties_the_index(backend: Backend) {
    let h = harness(backend, None).await;
    let tokens = log_in_fifty_devices_and_let_them_expire(&h).await;
    for token in &tokens {
        assert_eq!(h.me(token).await["user"], serde_json::Value::Null);
    }
}

/// Memory only: on Redis, logically expired keys linger until their real
/// TTL (see `once_sessions_expire_nothing_is_left` in tests/redis.rs).
#[tokio::test]
async fn on_the_memory_store_expired_sessions_leave_nothing_behind() {
    let h = harness(Backend::Memory, None).await;
    log_in_fifty_devices_and_let_them_expire(&h).await;
    h.store.memory().purge_expired();
    assert_eq!(h.store.sessions().await, 0);
    assert_eq!(h.store.memory().footprint(), (0, 0, 0));
}

/// Logs user 1 in on 50 devices, then lets the idle timeout pass: the
/// index lists none of them any more. Returns their tokens.
async fn log_in_fifty_devices_and_let_them_expire(h: &Harness) -> Vec<String> {
    let mut tokens = Vec::new();
    for _ in 0..50 {
        tokens.push(h.login(1).await.0);
    }
    assert_eq!(h.manager.list("1").await.unwrap().len(), 50);
    h.clock.advance(Duration::from_secs(31 * 60));
    assert!(h.manager.list("1").await.unwrap().is_empty());
    tokens
}

/// 20 logins of one user race 5 "log out everywhere" from that user's
/// devices. Whatever the interleaving, the index and the tokens agree at
/// the end: every session the manager lists works, every other one is dead
/// on its next request.
async fn logins_racing_log_out_everywhere_leave_only_listed_sessions_alive(backend: Backend) {
    let h = harness(backend, None).await;
    // One device logs out everywhere first, so that on Redis the race is not
    // skewed by the scripts' first load.
    let (first, _) = h.login(1).await;
    assert_eq!(
        send(&h.app, post("/everywhere", Some(&first))).await.body,
        "1"
    );
    let mut revokers = Vec::new();
    for _ in 0..5 {
        revokers.push(h.login(1).await.0);
    }
    // Interleaved: each "log out everywhere" is started before 4 logins,
    // so that logins land before, between and after the revocations.
    let mut logins = Vec::new();
    let mut revokes = Vec::new();
    for token in &revokers {
        let (app, token) = (h.app.clone(), token.clone());
        revokes.push(tokio::spawn(async move {
            send(&app, post("/everywhere", Some(&token))).await
        }));
        for _ in 0..4 {
            let app = h.app.clone();
            logins.push(tokio::spawn(async move {
                send(&app, post("/login/1", None)).await
            }));
        }
    }
    // (token, session id). A login revoked by a racing "log out everywhere"
    // before its response left (the handler's label save finds it gone and
    // does not bring it back) answers with no token.
    let mut logged_in = Vec::new();
    for login in logins {
        let res = login.await.unwrap();
        assert_eq!(res.status, StatusCode::OK, "login: {}", res.body);
        assert!(SessionId::parse(&res.body).is_some(), "{}", res.body);
        logged_in.push((res.cookie(), res.body));
    }
    for revoke in revokes {
        let res = revoke.await.unwrap();
        assert_eq!(
            res.status,
            StatusCode::OK,
            "log out everywhere: {}",
            res.body
        );
    }

    let listed: HashSet<String> = h
        .manager
        .list("1")
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.id.to_string())
        .collect();
    let ids: HashSet<String> = logged_in.iter().map(|(_, id)| id.clone()).collect();
    assert!(
        listed.is_subset(&ids),
        "only sessions of the racing logins can be listed: {listed:?}"
    );
    for (token, id) in &logged_in {
        let Some(token) = token else {
            assert!(
                !listed.contains(id),
                "{id} was revoked before its login answered, yet it is listed"
            );
            continue;
        };
        let me = h.me(token).await;
        if listed.contains(id) {
            assert_eq!(me["user"]["id"], 1, "listed session {id} works");
            assert_eq!(me["id"], id.as_str());
        } else {
            assert_eq!(me["user"], serde_json::Value::Null, "unlisted {id} is dead");
        }
    }
    for token in &revokers {
        assert_eq!(
            h.me(token).await["user"],
            serde_json::Value::Null,
            "a device that logged out everywhere is logged out"
        );
    }
    // The index still works: a new device is listed next to the survivors.
    let (_, id) = h.login(1).await;
    let after = h.manager.list("1").await.unwrap();
    assert_eq!(after.len(), listed.len() + 1);
    assert!(after.iter().any(|info| info.id.to_string() == id));
}

async fn logging_in_as_another_user_carries_nothing_over(backend: Backend) {
    let h = harness(backend, None).await;
    let (t1, _) = h.login(1).await;
    send(&h.app, post("/mfa", Some(&t1))).await;
    // The same user logging in again keeps the session's data.
    let res = send(&h.app, post("/login/1", Some(&t1))).await;
    let t1 = res.cookie().unwrap();
    let me = send(&h.app, get("/me", Some(&t1))).await.json();
    assert_eq!(me["mfa_ok"], true, "same user: data carried over");
    // Another user on the same browser starts from empty data. (The login
    // route's cart is user 1's already, so the request changed nothing.)
    let res = send(&h.app, post("/login/2", Some(&t1))).await;
    let t2 = res.cookie().unwrap();
    let me = send(&h.app, get("/me", Some(&t2))).await.json();
    assert_eq!(me["user"]["id"], 2);
    assert_eq!(
        me["mfa_ok"],
        serde_json::Value::Null,
        "user 1's flag leaked into user 2's session"
    );
    assert_eq!(me["cart"], serde_json::Value::Null);
    // User 1's session ended with the login.
    assert_eq!(
        send(&h.app, get("/me", Some(&t1))).await.json()["id"],
        serde_json::Value::Null
    );
}

async fn a_user_keeps_at_most_a_hundred_sessions_by_default(backend: Backend) {
    let h = harness(backend, None).await;
    let (first, _) = h.login(9).await;
    for _ in 0..100 {
        h.clock.advance(Duration::from_millis(1));
        h.login(9).await;
    }
    assert_eq!(h.manager.list("9").await.unwrap().len(), 100);
    assert_eq!(
        send(&h.app, get("/me", Some(&first))).await.json()["id"],
        serde_json::Value::Null,
        "the oldest session was revoked"
    );
}
