//! How long sessions live through the layer, on every store: a short
//! per-session idle timeout in use, the default absolute timeout, and a
//! persistent cookie that follows its session (`memory::*`, `redis::*`,
//! `cluster::*`).

mod support;

use std::time::Duration;

use axum::routing;
use axum::Router;
use sessionkit::{ManualClock, Session, SessionLayer, SessionLayerBuilder};
use support::stores::{on_every_store, Backend, TestStore};
use support::*;

on_every_store! {
    a_short_idle_timeout_of_its_own_never_expires_a_session_in_use,
    a_busy_session_ends_at_the_default_absolute_timeout,
    a_remembered_session_gets_a_cookie_that_follows_its_deadline,
    a_max_age_cookie_is_renewed_as_the_session_slides,
    a_browser_session_cookie_is_never_resent,
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

struct Harness {
    app: Router,
    clock: ManualClock,
    _store: TestStore,
}

async fn harness(
    backend: Backend,
    configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
) -> Harness {
    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let layer = configure(SessionLayer::builder(store.store.clone()).clock(clock.clone())).build();
    let app = support::routes::counter()
        .route(
            "/idle/{secs}",
            routing::post(
                |axum::extract::Path(secs): axum::extract::Path<u64>, s: Session| async move {
                    s.insert("n", 1)?;
                    s.set_idle_timeout(Duration::from_secs(secs))?;
                    Ok::<_, sessionkit::Error>("set")
                },
            ),
        )
        .layer(layer);
    Harness {
        app,
        clock,
        _store: store,
    }
}

fn max_age(reply: &Reply) -> Option<Duration> {
    reply
        .set_cookie(COOKIE)
        .and_then(|c| c.max_age())
        .and_then(|d| d.try_into().ok())
}

async fn a_short_idle_timeout_of_its_own_never_expires_a_session_in_use(backend: Backend) {
    let h = harness(backend, |b| b).await;
    let token = send(&h.app, post("/idle/30", None)).await.cookie().unwrap();
    // A read every 10 s for two minutes: far beyond the 30 s timeout, while
    // reads refresh only every minute by default.
    for _ in 0..12 {
        h.clock.advance(Duration::from_secs(10));
        assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
    }
    // Writes slide it too.
    for _ in 0..6 {
        h.clock.advance(Duration::from_secs(20));
        send(&h.app, post("/count", Some(&token))).await;
    }
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "7");
    // Unused for its own timeout, it ends.
    h.clock.advance(Duration::from_secs(30));
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "0");
}

async fn a_busy_session_ends_at_the_default_absolute_timeout(backend: Backend) {
    let h = harness(backend, |b| b).await;
    let token = send(&h.app, post("/count", None)).await.cookie().unwrap();
    let mut elapsed = Duration::ZERO;
    while elapsed + 20 * MINUTE < DAY {
        h.clock.advance(20 * MINUTE);
        elapsed += 20 * MINUTE;
        assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
    }
    h.clock.advance(DAY - elapsed);
    assert_eq!(
        send(&h.app, get("/read", Some(&token))).await.body,
        "0",
        "a day after it started, the user signs in again"
    );
}

async fn a_remembered_session_gets_a_cookie_that_follows_its_deadline(backend: Backend) {
    let h = harness(backend, |b| b.absolute_timeout(None)).await;
    let res = send(&h.app, post("/idle/2592000", None)).await;
    let token = res.cookie().unwrap();
    assert_eq!(
        max_age(&res),
        Some(30 * DAY),
        "\"remember me\" reaches the browser"
    );
    // A request before the refresh interval moves nothing: no cookie.
    h.clock.advance(Duration::from_secs(30));
    assert_eq!(
        send(&h.app, get("/read", Some(&token)))
            .await
            .set_cookie(COOKIE),
        None
    );
    // Once the deadline slides, the same token goes out with a Max-Age
    // matching the session's new deadline.
    h.clock.advance(HOUR);
    let res = send(&h.app, get("/read", Some(&token))).await;
    assert_eq!(res.cookie().as_deref(), Some(token.as_str()));
    assert_eq!(max_age(&res), Some(30 * DAY));
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
}

async fn a_max_age_cookie_is_renewed_as_the_session_slides(backend: Backend) {
    let h = harness(backend, |b| b.max_age(2 * HOUR).idle_timeout(2 * HOUR)).await;
    let res = send(&h.app, post("/count", None)).await;
    let token = res.cookie().unwrap();
    assert_eq!(max_age(&res), Some(2 * HOUR));
    h.clock.advance(HOUR + 30 * MINUTE);
    let res = send(&h.app, get("/read", Some(&token))).await;
    assert_eq!(res.cookie().as_deref(), Some(token.as_str()));
    assert_eq!(
        max_age(&res),
        Some(2 * HOUR),
        "the cookie lives as long as the session again"
    );
    // Past the two hours since the cookie was first issued, both still work.
    h.clock.advance(HOUR);
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
}

async fn a_browser_session_cookie_is_never_resent(backend: Backend) {
    let h = harness(backend, |b| b).await;
    let res = send(&h.app, post("/count", None)).await;
    let token = res.cookie().unwrap();
    assert_eq!(max_age(&res), None);
    h.clock.advance(10 * MINUTE);
    let res = send(&h.app, get("/read", Some(&token))).await;
    assert_eq!(res.body, "1");
    assert_eq!(res.set_cookie(COOKIE), None);
}
