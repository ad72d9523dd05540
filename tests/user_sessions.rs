//! A user's sessions through the layer: listing, revoking, logging out
//! everywhere, the per-user limit and pushing user changes.

mod support;

use std::time::Duration;

use axum::extract::Path;
use axum::routing;
use axum::Router;
use http::StatusCode;
use sessionkit::{ManualClock, MemoryStore, Session, SessionId, SessionLayer, SessionManager};
use support::*;

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/login/{id}",
            routing::post(|Path(id): Path<u64>, s: Session| async move {
                s.insert("cart", vec!["book"])?;
                s.login(&user(id, &format!("user{id}"))).await?;
                s.set_label(format!("device of {id}"));
                Ok::<_, sessionkit::Error>(s.id().map(|i| i.to_string()).unwrap_or_default())
            }),
        )
        .route(
            "/me",
            routing::get(|s: Session| async move {
                let u: Option<User> = s.user()?;
                let cart: Option<Vec<String>> = s.get("cart")?;
                Ok::<_, sessionkit::Error>(
                    serde_json::json!({
                        "id": s.id().map(|i| i.to_string()),
                        "user": u,
                        "cart": cart,
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
    store: MemoryStore,
}

fn harness(max: Option<usize>) -> Harness {
    let clock = ManualClock::new();
    let store = MemoryStore::with_clock(clock.clone());
    let mut b = SessionLayer::builder(store.clone()).clock(clock.clone());
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

#[tokio::test]
async fn the_active_devices_page() {
    let h = harness(None);
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

#[tokio::test]
async fn log_out_everywhere_and_everywhere_else() {
    let h = harness(None);
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
    assert_eq!(res.set_cookie("id").unwrap().value(), "", "cookie expired");
    assert_eq!(h.me(&a).await["user"], serde_json::Value::Null);
    assert!(h.manager.list("1").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_oldest_session_goes_beyond_the_limit() {
    let h = harness(Some(2));
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

#[tokio::test]
async fn sync_user_reaches_every_device_and_leaves_data_alone() {
    let h = harness(None);
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

#[tokio::test]
async fn a_revoked_session_is_dead_on_every_server_sharing_the_store() {
    let clock = ManualClock::new();
    let store = MemoryStore::with_clock(clock.clone());
    let server_a = app(SessionLayer::builder(store.clone())
        .clock(clock.clone())
        .build());
    let server_b = SessionLayer::builder(store.clone())
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

#[tokio::test]
async fn expiry_empties_the_index() {
    let h = harness(None);
    for _ in 0..50 {
        h.login(1).await;
    }
    assert_eq!(h.manager.list("1").await.unwrap().len(), 50);
    h.clock.advance(Duration::from_secs(31 * 60));
    assert!(h.manager.list("1").await.unwrap().is_empty());
    h.store.purge_expired();
    assert_eq!(h.store.footprint(), (0, 0, 0));
}
