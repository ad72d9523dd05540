//! Per-route use of sessions through the layer, on every store: silent
//! routes that do not extend the idle deadline, an explicit touch, routes
//! exempt from rotation and routes that rotate at once; and the same
//! settings on a session opened outside HTTP.

mod support;

use std::time::Duration;

use axum::routing;
use axum::Router;
use sessionkit::{Access, ManualClock, Regeneration, Session, SessionLayer, SessionManager};
use support::stores::{on_every_store, Backend, TestStore};
use support::*;

on_every_store! {
    a_silent_route_never_keeps_an_idle_session_alive,
    an_ordinary_read_keeps_the_session_alive,
    touch_extends_the_session_from_a_silent_route,
    a_write_on_a_silent_route_extends_the_session,
    a_route_without_rotation_leaves_a_due_token_for_the_next_request,
    a_route_that_rotates_now_replaces_a_fresh_token_with_a_grace_window,
    a_session_opened_silently_outside_http_does_not_slide,
}

const MINUTE: Duration = Duration::from_secs(60);
const IDLE: Duration = Duration::from_secs(30 * 60);
const SFR: Duration = Duration::from_secs(10 * 60);

struct Harness {
    app: Router,
    clock: ManualClock,
    manager: SessionManager,
    _store: TestStore,
}

/// `n` and the idle deadline in ms, or `none` without a session.
async fn show(s: Session) -> Result<String, sessionkit::Error> {
    Ok(match s.get::<u64>("n")? {
        Some(n) => format!("{n} {}", s.expires_at().unwrap_or(0)),
        None => "none".into(),
    })
}

async fn bump(s: Session) -> Result<String, sessionkit::Error> {
    let n: u64 = s.get("n")?.unwrap_or(0);
    s.insert("n", n + 1)?;
    Ok((n + 1).to_string())
}

async fn harness(backend: Backend) -> Harness {
    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let layer = SessionLayer::builder(store.store.clone())
        .clock(clock.clone())
        .idle_timeout(IDLE)
        .regeneration(Regeneration::every(SFR))
        .build();
    let manager = layer.manager();
    let silent = Access::new().silent();
    let app = Router::new()
        .route("/read", routing::get(show))
        .route("/write", routing::post(bump))
        .route("/poll", routing::get(show).route_layer(silent))
        .route("/poll/write", routing::post(bump).route_layer(silent))
        .route(
            "/poll/touch",
            routing::post(|s: Session| async move {
                s.touch().await?;
                show(s).await
            })
            .route_layer(silent),
        )
        .route(
            "/download",
            routing::get(show).route_layer(Access::new().no_rotation()),
        )
        .route(
            "/sensitive",
            routing::get(show).route_layer(Access::new().rotate_now()),
        )
        .layer(layer);
    Harness {
        app,
        clock,
        manager,
        _store: store,
    }
}

impl Harness {
    async fn start(&self) -> String {
        let reply = send(&self.app, post("/write", None)).await;
        assert_eq!(reply.body, "1");
        reply.cookie().expect("a new session sets its cookie")
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Sends with `token` and follows a rotation, as a browser would.
    async fn follow(&self, method: &str, uri: &str, token: &mut String) -> Reply {
        let reply = send(&self.app, request(method, uri, Some(token))).await;
        if let Some(new) = reply.cookie() {
            *token = new;
        }
        reply
    }
}

async fn a_silent_route_never_keeps_an_idle_session_alive(backend: Backend) {
    let h = harness(backend).await;
    let mut token = h.start().await;
    let first = h.follow("GET", "/poll", &mut token).await.body;
    assert!(first.starts_with("1 "), "{first}");
    // Polled every 5 minutes, rotated on the way (rotation is not a use).
    for _ in 0..5 {
        h.advance(5 * MINUTE);
        let polled = h.follow("GET", "/poll", &mut token).await;
        assert_eq!(
            polled.body, first,
            "a silent read must not move the deadline"
        );
    }
    h.advance(5 * MINUTE + Duration::from_secs(1));
    let late = h.follow("GET", "/poll", &mut token).await;
    assert_eq!(
        late.body, "none",
        "30 idle minutes of polling must end the session"
    );
}

async fn an_ordinary_read_keeps_the_session_alive(backend: Backend) {
    let h = harness(backend).await;
    let token = h.start().await;
    // Reads only, under the rotation age: the token stays the same.
    for _ in 0..8 {
        h.advance(5 * MINUTE);
        let read = send(&h.app, get("/download", Some(&token))).await;
        assert!(read.body.starts_with("1 "), "{}", read.body);
    }
    // 40 minutes after the write, well past one idle timeout.
    let read = send(&h.app, get("/poll", Some(&token))).await;
    assert!(read.body.starts_with("1 "), "{}", read.body);
}

async fn touch_extends_the_session_from_a_silent_route(backend: Backend) {
    let h = harness(backend).await;
    let mut token = h.start().await;
    for _ in 0..4 {
        h.advance(20 * MINUTE);
        let touched = h.follow("POST", "/poll/touch", &mut token).await;
        assert!(touched.body.starts_with("1 "), "{}", touched.body);
    }
    h.advance(20 * MINUTE);
    let read = h.follow("GET", "/poll", &mut token).await;
    assert!(
        read.body.starts_with("1 "),
        "touched 20 minutes ago: {}",
        read.body
    );
}

async fn a_write_on_a_silent_route_extends_the_session(backend: Backend) {
    let h = harness(backend).await;
    let mut token = h.start().await;
    h.advance(20 * MINUTE);
    let wrote = h.follow("POST", "/poll/write", &mut token).await;
    assert_eq!(wrote.body, "2");
    h.advance(20 * MINUTE);
    let read = h.follow("GET", "/poll", &mut token).await;
    assert!(
        read.body.starts_with("2 "),
        "written 20 minutes ago: {}",
        read.body
    );
}

async fn a_route_without_rotation_leaves_a_due_token_for_the_next_request(backend: Backend) {
    let h = harness(backend).await;
    let token = h.start().await;
    h.advance(SFR + MINUTE);
    let download = send(&h.app, get("/download", Some(&token))).await;
    assert!(download.body.starts_with("1 "), "{}", download.body);
    assert_eq!(download.cookie(), None, "no rotation on an exempt route");
    let again = send(&h.app, get("/download", Some(&token))).await;
    assert_eq!(again.cookie(), None);
    let read = send(&h.app, get("/read", Some(&token))).await;
    let new = read.cookie().expect("the next ordinary request rotates");
    assert_ne!(new, token);
    let with_new = send(&h.app, get("/read", Some(&new))).await;
    assert!(with_new.body.starts_with("1 "), "{}", with_new.body);
}

async fn a_route_that_rotates_now_replaces_a_fresh_token_with_a_grace_window(backend: Backend) {
    let h = harness(backend).await;
    let token = h.start().await;
    h.advance(MINUTE);
    let sensitive = send(&h.app, get("/sensitive", Some(&token))).await;
    let new = sensitive
        .cookie()
        .expect("a fresh token is rotated at once");
    assert_ne!(new, token);
    // A request already in flight with the old token is not logged out: it
    // gets the same replacement.
    let racing = send(&h.app, get("/read", Some(&token))).await;
    assert!(racing.body.starts_with("1 "), "{}", racing.body);
    assert_eq!(racing.cookie().as_deref(), Some(new.as_str()));
}

async fn a_session_opened_silently_outside_http_does_not_slide(backend: Backend) {
    let h = harness(backend).await;
    let token = h.start().await;
    let deadline = |s: &Session| s.expires_at().expect("a stored session");
    let before = deadline(&h.manager.open(Some(&token)).await.unwrap());
    h.advance(10 * MINUTE);
    let silent = h
        .manager
        .open_with(Some(&token), Access::new().silent())
        .await
        .unwrap();
    assert_eq!(deadline(&silent), before);
    let ordinary = h.manager.open(Some(&token)).await.unwrap();
    assert_eq!(deadline(&ordinary), before + 10 * 60 * 1000);
}
