//! The session layer through real requests (`tower::ServiceExt::oneshot`):
//! transport, strictness, laziness, deadlines, delta writes, privilege
//! changes and failures.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::routing;
use axum::Router;
use http::{Request, StatusCode};
use sessionkit::store::ListSessions;
use sessionkit::Regeneration;
use sessionkit::{
    ManualClock, MemoryStore, SameSite, Session, SessionLayer, SessionLayerBuilder, SessionStore,
};
use support::*;
use tokio::sync::Barrier;

async fn whoami(session: Session) -> Result<String, sessionkit::Error> {
    let user: Option<User> = session.user()?;
    Ok(format!(
        "{}|{}",
        user.map(|u| u.name).unwrap_or_default(),
        session.user_id().unwrap_or_default()
    ))
}

fn routes() -> Router {
    routes::basic(user(7, "ada"))
        .route("/whoami", routing::get(whoami))
        .route("/plain", routing::get(|| async { "plain" }))
        .route(
            "/destroy",
            routing::post(|s: Session| async move {
                s.logout().await?;
                Ok::<_, sessionkit::Error>("destroyed")
            }),
        )
        .route(
            "/remember",
            routing::post(|s: Session| async move {
                s.set_idle_timeout(Duration::from_secs(2 * 3600))?;
                Ok::<_, sessionkit::Error>("remembered")
            }),
        )
        .route(
            "/touch-only",
            routing::get(|s: Session| async move { format!("{:?}", s.id().is_some()) }),
        )
        .route(
            "/fail",
            routing::post(|s: Session| async move {
                s.insert("before_failure", true)?;
                Ok::<_, sessionkit::Error>((StatusCode::INTERNAL_SERVER_ERROR, "boom"))
            }),
        )
}

struct Harness {
    app: Router,
    clock: ManualClock,
    store: Counting<MemoryStore>,
}

fn harness_with(configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder) -> Harness {
    let clock = ManualClock::new();
    let store = Counting::new(MemoryStore::with_clock(clock.clone()));
    let layer = configure(SessionLayer::builder(store.clone()).clock(clock.clone())).build();
    Harness {
        app: routes().layer(layer),
        clock,
        store,
    }
}

fn harness() -> Harness {
    harness_with(|b| b)
}

impl Harness {
    async fn new_session(&self) -> String {
        let res = send(&self.app, post("/count", None)).await;
        assert_eq!(res.status, StatusCode::OK);
        res.cookie().expect("a new session sets a cookie")
    }
}

#[tokio::test]
async fn first_write_creates_a_session_with_safe_cookie_attributes() {
    let h = harness();
    let res = send(&h.app, post("/count", None)).await;
    assert_eq!(res.body, "1");
    let cookie = res.set_cookie(COOKIE).expect("Set-Cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    assert_eq!(cookie.max_age(), None);
    assert!(cookie.value().len() >= 22, "at least 128 bits");
    assert!(cookie
        .value()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    // No token came in: by default the new session is announced in the
    // HttpOnly cookie only, never in a header page scripts can read.
    assert_eq!(res.header("x-session-id"), None);

    let token = cookie.value();
    let res = send(&h.app, post("/count", Some(token))).await;
    assert_eq!(res.body, "2");
    assert!(res.cookie().is_none(), "an unchanged token is not re-sent");
    assert!(res.header("cache-control").is_none());
    assert_eq!(send(&h.app, get("/read", Some(token))).await.body, "2");
}

#[tokio::test]
async fn a_sibling_cookie_that_is_not_ascii_does_not_hide_the_session() {
    let h = harness();
    let token = h.new_session().await;
    for sibling in [&b"theme=caf\xc3\xa9"[..], b"theme=caf\xe9"] {
        let mut value = sibling.to_vec();
        value.extend_from_slice(format!("; {COOKIE}={token}").as_bytes());
        let req = Request::get("/read")
            .header("cookie", http::HeaderValue::from_bytes(&value).unwrap())
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&h.app, req).await.body, "1", "{sibling:?}");
    }
}

#[tokio::test]
async fn the_default_cookie_name_is_distinctive_and_host_only_when_secure() {
    async fn name(configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder) -> String {
        let h = harness_with(configure);
        let res = send(&h.app, post("/count", None)).await;
        let set = res
            .header("set-cookie")
            .expect("a new session sets a cookie");
        let cookie = cookie::Cookie::parse(set).expect("a cookie");
        cookie.name().to_owned()
    }
    // `__Host-`: the browser refuses it from a parent domain or another
    // path, so no other app can plant a second cookie of the same name.
    assert_eq!(name(|b| b).await, "__Host-sessionkit");
    assert_eq!(
        name(|b| b.domain("example.com")).await,
        "__Secure-sessionkit"
    );
    assert_eq!(name(|b| b.path("/app")).await, "__Secure-sessionkit");
    assert_eq!(name(|b| b.secure(false)).await, "sessionkit");
    assert_eq!(name(|b| b.cookie_name("sid")).await, "sid");
}

#[tokio::test]
async fn header_transport_answers_on_the_header() {
    let h = harness();
    let token = h.new_session().await;
    let req = Request::get("/read")
        .header("x-session-id", &token)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&h.app, req).await.body, "1");

    // An unknown header token is replaced on the header, not in a cookie.
    let unknown = made_up_token('B');
    let req = Request::post("/count")
        .header("x-session-id", &unknown)
        .body(Body::empty())
        .unwrap();
    let res = send(&h.app, req).await;
    assert_eq!(res.body, "1");
    let new = res.header("x-session-id").expect("token in the header");
    assert_ne!(new, unknown);
    assert!(res.set_cookie(COOKIE).is_none());
}

#[tokio::test]
async fn transports_can_be_switched_off() {
    let h = harness_with(|b| b.header(false));
    let token = h.new_session().await;
    let req = Request::get("/read")
        .header("x-session-id", &token)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&h.app, req).await.body, "0", "header ignored");

    let h = harness_with(|b| b.cookie(false).header_name("authorization-token"));
    let res = send(&h.app, post("/count", None)).await;
    assert!(res.set_cookie(COOKIE).is_none());
    let token = res.header("authorization-token").unwrap();
    let req = Request::get("/read")
        .header("authorization-token", &token)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&h.app, req).await.body, "1");
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "0");
}

#[tokio::test]
async fn untouched_anonymous_requests_leave_no_trace() {
    let h = harness();
    let res = send(&h.app, get("/read", None)).await;
    assert_eq!(res.body, "0");
    assert!(res.set_cookie(COOKIE).is_none());
    assert!(res.header("x-session-id").is_none());
    assert_eq!(h.store.inner.len(), 0);
    assert_eq!(h.store.calls(), (0, 0), "no token: nothing to load");
}

#[tokio::test]
async fn routes_without_the_extractor_cost_no_store_call() {
    let h = harness();
    let token = h.new_session().await;
    let before = h.store.calls();
    let res = send(&h.app, get("/plain", Some(&token))).await;
    assert_eq!(res.body, "plain");
    assert_eq!(h.store.calls(), before);
    assert!(res.set_cookie(COOKIE).is_none());
}

#[tokio::test]
async fn one_load_per_request_however_often_the_session_is_read() {
    let clock = ManualClock::new();
    let store = Counting::new(MemoryStore::with_clock(clock.clone()));
    let app = Router::new()
        .route(
            "/twice",
            routing::get(|a: Session, b: Session| async move {
                let x: Option<u64> = a.get("n").unwrap();
                let y: Option<u64> = b.get("n").unwrap();
                format!("{x:?}{y:?}")
            }),
        )
        .merge(routes::counter())
        .layer(SessionLayer::builder(store.clone()).clock(clock).build());
    let token = send(&app, post("/count", None)).await.cookie().unwrap();
    let (loads, _) = store.calls();
    let res = send(&app, get("/twice", Some(&token))).await;
    assert_eq!(res.body, "Some(1)Some(1)");
    assert_eq!(store.calls().0, loads + 1);
}

#[tokio::test]
async fn malformed_tokens_are_ignored_without_a_store_call() {
    let h = harness();
    let token = h.new_session().await;
    let before = h.store.calls();
    let mut cases: Vec<Request<Body>> = Vec::new();
    for bad in [
        "".to_owned(),
        token[1..].to_owned(),
        format!("{token}x"),
        format!("{}+{}", &token[..10], &token[11..]),
        format!("{}%{}", &token[..10], &token[11..]),
        "x".repeat(64 * 1024),
        "\"quoted\"".to_owned(),
    ] {
        cases.push(get("/read", Some(&bad)));
        cases.push(
            Request::get("/read")
                .header("x-session-id", bad)
                .body(Body::empty())
                .unwrap(),
        );
    }
    // Non-UTF-8 bytes in both transports.
    let raw = http::HeaderValue::from_bytes(b"__Host-sessionkit=\xff\xfe\xfd").unwrap();
    cases.push(
        Request::get("/read")
            .header("cookie", raw.clone())
            .header(
                "x-session-id",
                http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
            )
            .body(Body::empty())
            .unwrap(),
    );
    // The same cookie twice, one of them valid: cookie tossing, trust neither.
    let other = made_up_token('C');
    cases.push(
        Request::get("/read")
            .header("cookie", format!("{COOKIE}={token}; {COOKIE}={other}"))
            .body(Body::empty())
            .unwrap(),
    );
    cases.push(
        Request::get("/read")
            .header("cookie", format!("{COOKIE}={other}"))
            .header("cookie", format!("{COOKIE}={token}"))
            .body(Body::empty())
            .unwrap(),
    );
    // A repeated header.
    cases.push(
        Request::get("/read")
            .header("x-session-id", &token)
            .header("x-session-id", &token)
            .body(Body::empty())
            .unwrap(),
    );
    for req in cases {
        let res = send(&h.app, req).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.body, "0", "treated as no session");
    }
    assert_eq!(h.store.calls(), before, "no store call for malformed input");
    // And the real session is untouched.
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
}

#[tokio::test]
async fn unknown_tokens_are_never_adopted() {
    let h = harness();
    let planted = made_up_token('z');
    let res = send(&h.app, get("/read", Some(&planted))).await;
    assert!(res.set_cookie(COOKIE).is_none(), "no write, no new token");
    assert_eq!(h.store.inner.len(), 0);

    let res = send(&h.app, post("/count", Some(&planted))).await;
    let issued = res.cookie().expect("the write gets a fresh session");
    assert_ne!(issued, planted);
    assert_eq!(send(&h.app, get("/read", Some(&planted))).await.body, "0");
    assert_eq!(send(&h.app, get("/read", Some(&issued))).await.body, "1");
}

#[tokio::test]
async fn reads_slide_the_idle_deadline() {
    let h = harness();
    let token = h.new_session().await;
    for _ in 0..3 {
        h.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
    }
    // 60 minutes after creation, alive thanks to reads alone.
    h.clock.advance(Duration::from_secs(30 * 60 + 1));
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "0");
}

#[tokio::test]
async fn idle_refresh_is_throttled() {
    let h = harness_with(|b| b.refresh_interval(Duration::from_secs(60)));
    let token = h.new_session().await;
    // Read 30 s in: inside the refresh interval, so the deadline stays at
    // creation + 30 min.
    h.clock.advance(Duration::from_secs(30));
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
    h.clock.advance(Duration::from_secs(30 * 60 - 29));
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "0");

    // Read 61 s in: the deadline slides.
    let token = h.new_session().await;
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
    h.clock.advance(Duration::from_secs(30 * 60 - 30));
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
}

#[tokio::test]
async fn absolute_timeout_ends_busy_sessions() {
    let h = harness_with(|b| b.absolute_timeout(Duration::from_secs(3600)));
    let token = h.new_session().await;
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(10 * 60));
        assert_eq!(
            send(&h.app, post("/count", Some(&token))).await.status,
            StatusCode::OK
        );
    }
    h.clock.advance(Duration::from_secs(10 * 60));
    let res = send(&h.app, get("/read", Some(&token))).await;
    assert_eq!(res.body, "0", "past the absolute deadline");
}

#[tokio::test]
async fn per_session_idle_timeout_is_persisted() {
    let h = harness();
    let token = h.new_session().await;
    send(&h.app, post("/remember", Some(&token))).await;
    h.clock.advance(Duration::from_secs(90 * 60));
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
    h.clock.advance(Duration::from_secs(2 * 3600 + 1));
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "0");
}

/// Two requests on one session, inside their handlers at the same time,
/// each changing its own key: both changes survive.
#[tokio::test]
async fn concurrent_writes_to_different_keys_both_survive() {
    let store = MemoryStore::new();
    let barrier = Arc::new(Barrier::new(2));
    let app = routes::counter()
        .route(
            "/set/{key}",
            routing::post(
                |State(barrier): State<Arc<Barrier>>,
                 axum::extract::Path(key): axum::extract::Path<String>,
                 s: Session| async move {
                    // Both requests have loaded the session before either writes.
                    barrier.wait().await;
                    s.insert(&key, &key).unwrap();
                    "ok"
                },
            ),
        )
        .route(
            "/all",
            routing::get(|s: Session| async move {
                let mut keys = s.keys()?;
                keys.sort();
                Ok::<_, sessionkit::Error>(keys.join(","))
            }),
        )
        .with_state(barrier)
        .layer(SessionLayer::builder(store).build());
    let token = send(&app, post("/count", None)).await.cookie().unwrap();
    for round in 0..20 {
        let (a, b) = tokio::join!(
            send(&app, post(&format!("/set/a{round}"), Some(&token))),
            send(&app, post(&format!("/set/b{round}"), Some(&token))),
        );
        assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    }
    let all = send(&app, get("/all", Some(&token))).await.body;
    for round in 0..20 {
        assert!(all.contains(&format!("a{round},")), "{all}");
        assert!(all.contains(&format!("b{round}")), "{all}");
    }
    assert!(all.contains(",n"), "{all}");
}

/// A request that loaded the session before it was logged out elsewhere
/// must not bring it back when it saves.
#[tokio::test]
async fn a_write_never_resurrects_a_logged_out_session() {
    // The session ends (logout, or a login that replaces it) while a slow
    // request that loaded it is still writing.
    for ender in ["/logout", "/login"] {
        let store = MemoryStore::new();
        let gate = Arc::new((Barrier::new(2), Barrier::new(2)));
        let app = routes::basic(user(7, "ada"))
            .route(
                "/slow-write",
                routing::post(
                    |State(gate): State<Arc<(Barrier, Barrier)>>, s: Session| async move {
                        gate.0.wait().await; // loaded
                        gate.1.wait().await; // the session has ended
                        s.insert("late", 1).unwrap();
                        "written"
                    },
                ),
            )
            .with_state(gate.clone())
            .layer(SessionLayer::builder(store.clone()).build());
        let token = send(&app, post("/count", None)).await.cookie().unwrap();
        let slow = tokio::spawn({
            let app = app.clone();
            let token = token.clone();
            async move { send(&app, post("/slow-write", Some(&token))).await }
        });
        gate.0.wait().await;
        let ended = send(&app, post(ender, Some(&token))).await;
        assert_eq!(ended.status, StatusCode::OK, "{ender}");
        gate.1.wait().await;
        let res = slow.await.unwrap();
        assert_eq!(res.status, StatusCode::OK, "{ender}");
        // Its change is dropped, and it says nothing about the token: the
        // client may hold a new one by now (from the login), which an
        // expiring cookie arriving later would delete.
        assert!(res.set_cookie(COOKIE).is_none(), "{ender}: no Set-Cookie");
        assert_eq!(send(&app, get("/read", Some(&token))).await.body, "0");
        match ended.cookie() {
            Some(new) => {
                assert_eq!(ender, "/login");
                assert_eq!(store.len(), 1, "only the logged-in session");
                assert_eq!(send(&app, get("/read", Some(&new))).await.body, "1");
            }
            None => assert_eq!(store.len(), 0, "{ender}: not resurrected"),
        }
    }
}

#[tokio::test]
async fn a_5xx_from_the_handler_does_not_lose_the_session() {
    let h = harness();
    let token = h.new_session().await;
    let res = send(&h.app, post("/fail", Some(&token))).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        res.set_cookie(COOKIE).is_none(),
        "the cookie is not cleared"
    );
    assert_eq!(send(&h.app, get("/read", Some(&token))).await.body, "1");
}

#[tokio::test]
async fn login_keeps_data_binds_the_user_and_kills_the_old_token() {
    let h = harness();
    let anon = h.new_session().await;
    let res = send(&h.app, post("/login", Some(&anon))).await;
    assert_eq!(res.status, StatusCode::OK);
    let authed = res.cookie().expect("login sets a new token");
    assert_ne!(authed, anon);
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));

    assert_eq!(
        send(&h.app, get("/read", Some(&authed))).await.body,
        "1",
        "data kept"
    );
    assert_eq!(
        send(&h.app, get("/whoami", Some(&authed))).await.body,
        "ada|7"
    );
    // The anonymous token died at once: no fixation, no grace.
    assert_eq!(send(&h.app, get("/whoami", Some(&anon))).await.body, "|");
    assert_eq!(send(&h.app, get("/read", Some(&anon))).await.body, "0");
}

#[tokio::test]
async fn login_on_a_request_without_a_session() {
    let h = harness();
    let res = send(&h.app, post("/login", None)).await;
    let token = res.cookie().unwrap();
    assert_eq!(
        send(&h.app, get("/whoami", Some(&token))).await.body,
        "ada|7"
    );
}

#[tokio::test]
async fn logout_destroys_the_session_and_expires_the_cookie_with_the_same_attributes() {
    let h = harness_with(|b| b.cookie_name("__Host-sid"));
    let res = send(&h.app, post("/login", None)).await;
    let token = res.set_cookie("__Host-sid").unwrap().value().to_owned();
    let req = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("cookie", format!("__Host-sid={token}"))
            .body(Body::empty())
            .unwrap()
    };
    let res = send(&h.app, req("POST", "/logout")).await;
    let removal = res.set_cookie("__Host-sid").expect("removal cookie");
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age(), Some(cookie::time::Duration::ZERO));
    assert_eq!(removal.path(), Some("/"));
    assert_eq!(removal.secure(), Some(true));
    assert_eq!(removal.http_only(), Some(true));
    assert_eq!(removal.same_site(), Some(SameSite::Lax));
    assert_eq!(send(&h.app, req("GET", "/whoami")).await.body, "|");
    assert_eq!(h.store.inner.len(), 0);
}

#[tokio::test]
async fn regenerate_and_destroy() {
    let h = harness();
    let token = h.new_session().await;
    let res = send(&h.app, post("/regenerate", Some(&token))).await;
    let new = res.cookie().unwrap();
    assert_ne!(new, token);
    assert_eq!(
        send(&h.app, get("/read", Some(&token))).await.body,
        "0",
        "no grace"
    );
    assert_eq!(send(&h.app, get("/read", Some(&new))).await.body, "1");

    let res = send(&h.app, post("/destroy", Some(&new))).await;
    assert_eq!(res.set_cookie(COOKIE).unwrap().value(), "");
    assert_eq!(send(&h.app, get("/read", Some(&new))).await.body, "0");
    assert_eq!(h.store.inner.len(), 0);
}

#[tokio::test]
async fn store_failure_is_a_503_with_a_short_body() {
    let app = routes().layer(SessionLayer::builder(Broken::Down).build());
    let token = made_up_token('q');
    let res = send(&app, get("/read", Some(&token))).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body, "session store unavailable");
    // Writing a new session fails the same way, after the handler ran.
    let res = send(&app, post("/count", None)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    // Routes that do not use the session are unaffected.
    assert_eq!(
        send(&app, get("/plain", Some(&token))).await.status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_times_out() {
    let app = routes().layer(
        SessionLayer::builder(Broken::Hung)
            .store_timeout(Duration::from_millis(500))
            .build(),
    );
    let token = made_up_token('q');
    let started = tokio::time::Instant::now();
    let res = send(&app, get("/read", Some(&token))).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_extractor_without_the_layer_names_the_layer() {
    let app = routes();
    let res = send(&app, get("/read", None)).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(res.body.contains("SessionLayer"), "{}", res.body);
}

#[tokio::test]
async fn nonsense_configuration_is_refused() {
    let b = || SessionLayer::builder(MemoryStore::new());
    assert!(b()
        .cookie_name("__Host-x")
        .domain("example.com")
        .try_build()
        .is_err());
    assert!(b()
        .cookie_name("__Host-x")
        .secure(false)
        .try_build()
        .is_err());
    assert!(b().cookie_name("bad name;").try_build().is_err());
    assert!(b().cookie(false).header(false).try_build().is_err());
    assert!(b().idle_timeout(Duration::ZERO).try_build().is_err());
    assert!(b()
        .regeneration(Regeneration::every(Duration::ZERO))
        .try_build()
        .is_err());
    assert!(b().idle_timeout(Duration::MAX).try_build().is_err());
    assert!(b().connection_heartbeat(Duration::MAX).try_build().is_err());
    assert!(b()
        .idle_timeout(sessionkit::MAX_DURATION)
        .try_build()
        .is_ok());
    let err = b()
        .regeneration(Regeneration::every(Duration::from_secs(60)).grace(Duration::from_secs(60)))
        .try_build()
        .unwrap_err();
    assert!(err.to_string().contains("OJS"), "{err}");
    // Announcing on a transport that is off would create sessions whose
    // token is never delivered.
    assert!(b().header(false).announce(true, true).try_build().is_err());
    assert!(b().cookie(false).announce(true, false).try_build().is_err());
    assert!(b().announce(false, false).try_build().is_err());
    assert!(
        b().cookie(false).try_build().is_ok(),
        "header-only announces on the header"
    );
    assert!(b()
        .regeneration(Regeneration::every(Duration::from_secs(60)))
        .try_build()
        .is_ok());
    assert!(b().cookie_name("__Host-x").try_build().is_ok());
}

#[tokio::test]
async fn memory_store_returns_memory_when_sessions_expire() {
    let clock = ManualClock::new();
    let store = MemoryStore::with_clock(clock.clone());
    let app = routes().layer(
        SessionLayer::builder(store.clone())
            .clock(clock.clone())
            .build(),
    );
    for _ in 0..200 {
        send(&app, post("/count", None)).await;
    }
    for _ in 0..20 {
        send(&app, post("/login", None)).await;
    }
    assert_eq!(store.len(), 220);
    clock.advance(Duration::from_secs(31 * 60));
    store.purge_expired();
    assert_eq!(store.len(), 0);
    assert_eq!(store.footprint(), (0, 0, 0));
    assert!(store
        .list_sessions(&ListSessions {
            user_id: "7".to_owned(),
            now: clock_now(&clock)
        })
        .await
        .unwrap()
        .is_empty());
}

fn clock_now(clock: &ManualClock) -> u64 {
    use sessionkit::Clock;
    clock.now()
}

#[tokio::test]
async fn a_plain_tower_service_loads_and_saves_without_axum() {
    use tower::{Layer, ServiceExt};

    async fn handle(req: Request<String>) -> Result<http::Response<String>, sessionkit::Error> {
        let session = req
            .extensions()
            .get::<Session>()
            .cloned()
            .ok_or(sessionkit::Error::MissingLayer)?;
        session.load().await?;
        let n: u64 = session.get("n")?.unwrap_or(0);
        session.insert("n", n + 1)?;
        Ok(http::Response::new((n + 1).to_string()))
    }

    let service = SessionLayer::builder(MemoryStore::new())
        .build()
        .layer(tower::service_fn(handle));
    let res = service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(res.body(), "1");
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let res = service
        .oneshot(
            Request::builder()
                .header("cookie", cookie)
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.body(), "2", "saved after the first response");
}

/// A login through the layer from `peer`, with these extra headers: the
/// device its session is listed with.
async fn device_of_login(
    configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
    peer: &str,
    headers: &[(&'static str, &str)],
) -> Option<sessionkit::Device> {
    let h = harness_with(configure);
    let mut req = post("/login", None);
    req.headers_mut().insert(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36"
            .parse()
            .unwrap(),
    );
    for (name, value) in headers {
        req.headers_mut()
            .append(*name, http::HeaderValue::from_str(value).unwrap());
    }
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    assert_eq!(send(&h.app, req).await.status, StatusCode::OK);
    let listing = h
        .store
        .list_sessions(&ListSessions {
            user_id: "7".to_owned(),
            now: clock_now(&h.clock),
        })
        .await
        .unwrap();
    assert_eq!(listing.len(), 1);
    listing.into_iter().next().unwrap().device
}

#[tokio::test]
async fn a_login_records_the_user_agent_and_the_peer_address() {
    let device = device_of_login(|b| b, "127.0.0.1:50000", &[])
        .await
        .unwrap();
    assert_eq!(device.address, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(device.name().as_deref(), Some("Chrome 120 on Linux"));
    assert!(device.user_agent.unwrap().starts_with("Mozilla/5.0 (X11"));
}

#[tokio::test]
async fn a_forwarded_header_is_ignored_without_a_trusted_proxy() {
    let xff = [("x-forwarded-for", "203.0.113.9")];
    let device = device_of_login(|b| b, "10.0.0.2:443", &xff).await.unwrap();
    assert_eq!(device.address, Some("10.0.0.2".parse().unwrap()));
    // Trusting some other proxy does not make this peer's header count.
    let other = |b: SessionLayerBuilder| b.trusted_proxies(["10.0.0.3".parse().unwrap()]);
    let device = device_of_login(other, "10.0.0.2:443", &xff).await.unwrap();
    assert_eq!(device.address, Some("10.0.0.2".parse().unwrap()));
}

#[tokio::test]
async fn a_forwarded_header_from_a_trusted_proxy_names_the_client() {
    let proxy = |b: SessionLayerBuilder| b.trusted_proxies(["10.0.0.2".parse().unwrap()]);
    // The client wrote the first hop itself; the proxy appended the second.
    let xff = [("x-forwarded-for", "6.6.6.6, 203.0.113.9")];
    let device = device_of_login(proxy, "10.0.0.2:443", &xff).await.unwrap();
    assert_eq!(device.address, Some("203.0.113.9".parse().unwrap()));
    let forwarded = [("forwarded", "for=\"[2001:db8::7]:1234\"")];
    let device = device_of_login(proxy, "10.0.0.2:443", &forwarded)
        .await
        .unwrap();
    assert_eq!(device.address, Some("2001:db8::7".parse().unwrap()));
}

#[tokio::test]
async fn a_flood_of_cookieless_writes_stays_within_the_memory_bound_and_spares_logged_in_users() {
    const BOUND: usize = 64;
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .max_sessions(BOUND)
        .build();
    let app = routes().layer(
        SessionLayer::builder(store.clone())
            .clock(clock.clone())
            .build(),
    );
    let user = send(&app, post("/login", None))
        .await
        .cookie()
        .expect("logged in");
    for i in 0..2_000 {
        clock.advance(Duration::from_millis(10));
        let res = send(&app, post("/count", None)).await;
        // Each one gets a session: the flood evicts its own earlier ones.
        assert_eq!(res.status, StatusCode::OK, "request {i}");
        assert!(
            store.len() <= BOUND,
            "{} sessions after {i} requests",
            store.len()
        );
    }
    let me = send(&app, get("/whoami", Some(&user))).await;
    assert_eq!(me.body, "ada|7", "the logged-in session survived the flood");
}
