//! What a request keeps when a save races or fails, and what a session a
//! handler never loaded does, through the layer on every store
//! (`memory::*`, `redis::*`, `cluster::*`).

mod support;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing;
use axum::Router;
use http::{Request, StatusCode};
use sessionkit::{ManualClock, Session, SessionLayer};
use support::faults::Faulty;
use support::stores::{on_every_store, Backend, TestStore};
use support::*;

on_every_store! {
    writes_made_while_a_save_awaits_are_kept_for_the_next_save,
    a_response_never_leaves_before_a_save_of_its_session_that_a_clone_started,
    a_failed_commit_after_login_still_hands_out_the_new_token,
    a_failed_commit_after_regenerate_still_hands_out_the_new_token,
    a_plain_tower_service_loads_implicitly_and_never_reports_success_for_nothing,
}

struct Harness {
    app: Router,
    faults: Faulty,
    _store: TestStore,
}

async fn harness(backend: Backend) -> Harness {
    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let faults = Faulty::new(store.store.clone());
    let layer = SessionLayer::builder(faults.clone())
        .clock(clock.clone())
        .build();
    let app = Router::new()
        .route(
            "/set/{key}",
            routing::post(|Path(key): Path<String>, s: Session| async move {
                s.insert(&key, 1)?;
                Ok::<_, sessionkit::Error>("set")
            }),
        )
        .route(
            "/get/{key}",
            routing::get(|Path(key): Path<String>, s: Session| async move {
                let v: Option<u64> = s.get(&key)?;
                Ok::<_, sessionkit::Error>(format!("{v:?}"))
            }),
        )
        .route(
            "/race",
            routing::post(|State(faults): State<Faulty>, s: Session| async move {
                s.insert("before", 1)?;
                faults.hold_next_save();
                let saving = {
                    let s = s.clone();
                    tokio::spawn(async move { s.save().await })
                };
                faults.save_held().await;
                // The store has the first save's delta: this write is not in it.
                s.insert("during", 2)?;
                faults.release();
                saving.await.expect("the save task")?;
                Ok::<_, sessionkit::Error>("raced")
            }),
        )
        .route(
            "/save-in-background",
            routing::post(|State(faults): State<Faulty>, s: Session| async move {
                s.insert("background", 1)?;
                faults.hold_next_save();
                let clone = s.clone();
                tokio::spawn(async move { clone.save().await });
                // The clone's save has the change and is still at the store
                // when the handler answers.
                faults.save_held().await;
                Ok::<_, sessionkit::Error>("saving")
            }),
        )
        .route(
            "/login-and-write",
            routing::post(|s: Session| async move {
                s.login(&user(7, "ada")).await?;
                s.insert("after_login", 1)?;
                Ok::<_, sessionkit::Error>("in")
            }),
        )
        .route(
            "/regenerate-and-write",
            routing::post(|s: Session| async move {
                s.regenerate().await?;
                s.insert("after_regenerate", 1)?;
                Ok::<_, sessionkit::Error>("regenerated")
            }),
        )
        .route(
            "/whoami",
            routing::get(|s: Session| async move {
                let user: Option<User> = s.user()?;
                Ok::<_, sessionkit::Error>(user.map(|u| u.name).unwrap_or_default())
            }),
        )
        .with_state(faults.clone())
        .layer(layer);
    Harness {
        app,
        faults,
        _store: store,
    }
}

async fn writes_made_while_a_save_awaits_are_kept_for_the_next_save(backend: Backend) {
    let h = harness(backend).await;
    let token = send(&h.app, post("/set/first", None))
        .await
        .cookie()
        .unwrap();
    let res = send(&h.app, post("/race", Some(&token))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    for key in ["first", "before", "during"] {
        let res = send(&h.app, get(&format!("/get/{key}"), Some(&token))).await;
        assert_ne!(res.body, "None", "{key} was lost");
    }
}

async fn a_response_never_leaves_before_a_save_of_its_session_that_a_clone_started(
    backend: Backend,
) {
    let h = harness(backend).await;
    let token = send(&h.app, post("/set/first", None))
        .await
        .cookie()
        .unwrap();
    let app = h.app.clone();
    let request = post("/save-in-background", Some(&token));
    let mut response = tokio::spawn(async move { send(&app, request).await });
    // Nothing is left for the layer to save, but the response must still
    // wait: a client that sends its next request on this answer must find
    // the change stored.
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut response).await;
    assert!(
        early.is_err(),
        "the response left while a save of its session was in flight"
    );
    h.faults.release();
    let res = response.await.expect("the request task");
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = send(&h.app, get("/get/background", Some(&token))).await;
    assert_eq!(res.body, "Some(1)");
}

async fn a_failed_commit_after_login_still_hands_out_the_new_token(backend: Backend) {
    let h = harness(backend).await;
    let old = send(&h.app, post("/set/cart", None))
        .await
        .cookie()
        .unwrap();
    h.faults.fail_saves(true);
    let res = send(&h.app, post("/login-and-write", Some(&old))).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    let new = res
        .cookie()
        .expect("the login's token, the only one working now, on the 503");
    assert_ne!(new, old);
    h.faults.fail_saves(false);
    assert_eq!(send(&h.app, get("/whoami", Some(&new))).await.body, "ada");
    assert_eq!(
        send(&h.app, get("/get/cart", Some(&new))).await.body,
        "Some(1)"
    );
    assert_eq!(send(&h.app, get("/whoami", Some(&old))).await.body, "");
}

async fn a_failed_commit_after_regenerate_still_hands_out_the_new_token(backend: Backend) {
    let h = harness(backend).await;
    let old = send(&h.app, post("/set/cart", None))
        .await
        .cookie()
        .unwrap();
    h.faults.fail_saves(true);
    let res = send(&h.app, post("/regenerate-and-write", Some(&old))).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    let new = res.cookie().expect("the regenerated token on the 503");
    assert_ne!(new, old);
    h.faults.fail_saves(false);
    assert_eq!(
        send(&h.app, get("/get/cart", Some(&new))).await.body,
        "Some(1)"
    );
    assert_eq!(
        send(&h.app, get("/get/cart", Some(&old))).await.body,
        "None"
    );
}

async fn a_plain_tower_service_loads_implicitly_and_never_reports_success_for_nothing(
    backend: Backend,
) {
    use tower::{Layer, ServiceExt};

    async fn handle(req: Request<String>) -> Result<http::Response<String>, sessionkit::Error> {
        let session = req
            .extensions()
            .get::<Session>()
            .cloned()
            .ok_or(sessionkit::Error::MissingLayer)?;
        let body = match req.uri().path() {
            // No `load()` first: the async operations load the session.
            "/login" => session.login(&user(7, "ada")).await.map(|_| "in".into()),
            "/logout" => session.logout().await.map(|_| "out".into()),
            // Reads need the session loaded, and say so.
            "/get" => session.get::<u64>("n").map(|n| format!("{n:?}")),
            _ => {
                session.load().await?;
                Ok(session.user::<User>()?.map(|u| u.name).unwrap_or_default())
            }
        };
        Ok(match body {
            Ok(body) => http::Response::new(body),
            Err(err) => {
                let mut res = http::Response::new(err.to_string());
                *res.status_mut() = err.status();
                res
            }
        })
    }

    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let service = SessionLayer::builder(Arc::clone(&store.store))
        .clock(clock)
        .build()
        .layer(tower::service_fn(handle));
    let call = |path: &str, token: Option<&str>| {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header("cookie", format!("{COOKIE}={t}"));
        }
        service.clone().oneshot(req.body(String::new()).unwrap())
    };

    let res = call("/login", None).await.unwrap();
    assert_eq!(res.body(), "in");
    let token = cookie_value(&res).expect("the login's cookie");
    assert_eq!(call("/whoami", Some(&token)).await.unwrap().body(), "ada");

    let res = call("/get", Some(&token)).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let res = call("/logout", Some(&token)).await.unwrap();
    assert_eq!(res.body(), "out");
    assert_eq!(
        cookie_value(&res).as_deref(),
        Some(""),
        "logout expires the cookie"
    );
    assert_eq!(
        call("/whoami", Some(&token)).await.unwrap().body(),
        "",
        "the logged-out token still works"
    );
}

fn cookie_value(res: &http::Response<String>) -> Option<String> {
    res.headers()
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| cookie::Cookie::parse(v.to_str().ok()?.to_owned()).ok())
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
}
