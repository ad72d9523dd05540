//! The login guards through the real layer: the `LoggedIn<U>` extractor and
//! `RequireLoginLayer`, answering 401, redirecting, or passing the request
//! on, on every store (`memory::*`, `redis::*`, `cluster::*`, `sqlite::*`,
//! `postgres::*`), and their answers when the store is down or the session
//! layer is missing.

mod support;

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::Router;
use http::StatusCode;
use sessionkit::{
    LoggedIn, LoginRejection, ManualClock, MemoryStore, RequireLoginLayer, Session, SessionLayer,
};
use support::stores::{on_every_store, Backend, TestStore};
use support::*;

on_every_store! {
    the_extractor_answers_401_to_anonymous_requests_and_gives_the_user_to_logged_in_ones,
    the_layer_passes_only_logged_in_requests,
    the_layer_sends_anonymous_requests_to_the_login_page_when_told_to,
    a_logged_out_token_is_refused_by_both_guards,
    an_expired_session_is_refused_by_both_guards,
    an_optional_extractor_is_none_for_anonymous_requests,
}

/// Routes behind each guard, plus a login and a logout.
fn app(layer: SessionLayer) -> Router {
    let guarded = Router::new()
        .route(
            "/settings",
            routing::get(|s: Session| async move { format!("settings of {:?}", s.user_id()) }),
        )
        .route_layer(RequireLoginLayer::new());
    let pages = Router::new()
        .route("/page", routing::get(|| async { "members only" }))
        .route_layer(RequireLoginLayer::new().redirect_to("/login?next=page"));
    Router::new()
        .route(
            "/login",
            routing::post(|s: Session| async move {
                s.login(&user(7, "ada")).await?;
                Ok::<_, sessionkit::Error>("ok")
            }),
        )
        .route(
            "/write",
            routing::post(|s: Session| async move {
                s.insert("cart", 1)?;
                Ok::<_, sessionkit::Error>("ok")
            }),
        )
        .route(
            "/logout",
            routing::post(|s: Session| async move {
                s.logout().await?;
                Ok::<_, sessionkit::Error>("bye")
            }),
        )
        .route(
            "/me",
            routing::get(|LoggedIn(u): LoggedIn<User>| async move { u.name }),
        )
        .route(
            "/maybe",
            routing::get(|u: Option<LoggedIn<User>>| async move {
                u.map_or("anonymous".to_owned(), |LoggedIn(u)| u.name)
            }),
        )
        .route(
            "/account",
            routing::get(|u: Result<LoggedIn<User>, LoginRejection>| async move {
                match u {
                    Ok(LoggedIn(u)) => u.name.into_response(),
                    Err(rejection) => rejection.redirect_to("/login"),
                }
            }),
        )
        .nest("/account", guarded)
        .merge(pages)
        .layer(layer)
}

struct Harness {
    app: Router,
    clock: ManualClock,
    _store: TestStore,
}

async fn harness(backend: Backend) -> Harness {
    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let layer = SessionLayer::builder(store.store.clone())
        .clock(clock.clone())
        .build();
    Harness {
        app: app(layer),
        clock,
        _store: store,
    }
}

impl Harness {
    async fn login(&self) -> String {
        let res = send(&self.app, post("/login", None)).await;
        assert_eq!(res.status, StatusCode::OK);
        res.cookie().expect("a login sets the session cookie")
    }

    /// A stored session nobody logged in to.
    async fn anonymous(&self) -> String {
        send(&self.app, post("/write", None))
            .await
            .cookie()
            .expect("a write stores a session")
    }
}

fn assert_unauthorized(res: &Reply) {
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.body, "login required");
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
}

async fn the_extractor_answers_401_to_anonymous_requests_and_gives_the_user_to_logged_in_ones(
    backend: Backend,
) {
    let h = harness(backend).await;
    assert_unauthorized(&send(&h.app, get("/me", None)).await);
    assert_unauthorized(&send(&h.app, get("/me", Some("not-a-token"))).await);

    let anonymous = h.anonymous().await;
    assert_unauthorized(&send(&h.app, get("/me", Some(&anonymous))).await);

    let token = h.login().await;
    let res = send(&h.app, get("/me", Some(&token))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "ada");
}

async fn the_layer_passes_only_logged_in_requests(backend: Backend) {
    let h = harness(backend).await;
    assert_unauthorized(&send(&h.app, get("/account/settings", None)).await);
    let anonymous = h.anonymous().await;
    assert_unauthorized(&send(&h.app, get("/account/settings", Some(&anonymous))).await);

    let token = h.login().await;
    let res = send(&h.app, get("/account/settings", Some(&token))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "settings of Some(\"7\")");

    // The guard is a route layer: a path it does not wrap is still a 404.
    let res = send(&h.app, get("/account/nowhere", None)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

async fn the_layer_sends_anonymous_requests_to_the_login_page_when_told_to(backend: Backend) {
    let h = harness(backend).await;
    let res = send(&h.app, get("/page", None)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.header("location").as_deref(), Some("/login?next=page"));
    assert_eq!(res.body, "");

    // The extractor's rejection mapped by the handler redirects alike.
    let res = send(&h.app, get("/account", None)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.header("location").as_deref(), Some("/login"));

    let token = h.login().await;
    let res = send(&h.app, get("/page", Some(&token))).await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (StatusCode::OK, "members only")
    );
    let res = send(&h.app, get("/account", Some(&token))).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "ada"));
}

async fn a_logged_out_token_is_refused_by_both_guards(backend: Backend) {
    let h = harness(backend).await;
    let token = h.login().await;
    assert_eq!(
        send(&h.app, get("/me", Some(&token))).await.status,
        StatusCode::OK
    );
    let res = send(&h.app, post("/logout", Some(&token))).await;
    assert_eq!(res.status, StatusCode::OK);

    assert_unauthorized(&send(&h.app, get("/me", Some(&token))).await);
    assert_unauthorized(&send(&h.app, get("/account/settings", Some(&token))).await);
    assert_eq!(
        send(&h.app, get("/page", Some(&token))).await.status,
        StatusCode::SEE_OTHER
    );
}

async fn an_expired_session_is_refused_by_both_guards(backend: Backend) {
    let h = harness(backend).await;
    let token = h.login().await;
    h.clock.advance(Duration::from_secs(31 * 60));
    assert_unauthorized(&send(&h.app, get("/me", Some(&token))).await);
    assert_unauthorized(&send(&h.app, get("/account/settings", Some(&token))).await);
}

async fn an_optional_extractor_is_none_for_anonymous_requests(backend: Backend) {
    let h = harness(backend).await;
    let res = send(&h.app, get("/maybe", None)).await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (StatusCode::OK, "anonymous")
    );
    let token = h.login().await;
    let res = send(&h.app, get("/maybe", Some(&token))).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "ada"));
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_without_a_store_call() {
    let store = Counting::new(MemoryStore::new());
    let app = app(SessionLayer::builder(store.clone()).build());
    assert_unauthorized(&send(&app, get("/account/settings", None)).await);
    assert_unauthorized(&send(&app, get("/me", None)).await);
    assert_eq!(store.calls(), (0, 0));
}

#[tokio::test]
async fn the_layer_loads_the_session_once_for_the_guard_and_the_handler() {
    let store = Counting::new(MemoryStore::new());
    let app = app(SessionLayer::builder(store.clone()).build());
    let token = send(&app, post("/login", None)).await.cookie().unwrap();
    let (loads, _) = store.calls();
    let res = send(&app, get("/account/settings", Some(&token))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(store.calls().0, loads + 1, "one load for guard and handler");
}

#[tokio::test]
async fn a_store_outage_is_a_503_from_both_guards_not_a_401_or_a_redirect() {
    let app = app(SessionLayer::builder(Broken::Down).build());
    for uri in ["/me", "/account/settings", "/page", "/account", "/maybe"] {
        let res = send(&app, get(uri, Some(&made_up_token('A')))).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(res.body, "session store unavailable", "{uri}");
    }
}

#[tokio::test]
async fn the_guards_without_the_session_layer_answer_500() {
    let app: Router = Router::new()
        .route(
            "/me",
            routing::get(|LoggedIn(u): LoggedIn<User>| async move { u.name }),
        )
        .route("/guarded", routing::get(|| async { "never" }))
        .route_layer(RequireLoginLayer::new());
    let res = send(&app, get("/guarded", None)).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    let direct: Response = LoginRejection::Session(sessionkit::Error::MissingLayer).into_response();
    assert_eq!(direct.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_stored_user_of_another_shape_is_a_500_not_a_login() {
    #[derive(serde::Deserialize)]
    struct Admin {
        #[allow(dead_code)]
        clearance: u8,
    }
    let app: Router = Router::new()
        .route(
            "/login",
            routing::post(|s: Session| async move {
                s.login(&user(7, "ada")).await?;
                Ok::<_, sessionkit::Error>("ok")
            }),
        )
        .route(
            "/admin",
            routing::get(|_: LoggedIn<Admin>| async { "admin" }),
        )
        .layer(SessionLayer::builder(MemoryStore::new()).build());
    let token = send(&app, post("/login", None)).await.cookie().unwrap();
    let res = send(&app, get("/admin", Some(&token))).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.body, "session data error");
}
