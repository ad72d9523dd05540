//! Requests through the demo app's read route (`GET /api/me`) and write
//! route (`POST /api/counter`), plus a route that does not use the session,
//! on the in-memory store and, when `REDIS_URL` is set and the `redis`
//! feature is on, on Redis.
//!
//! ```text
//! cargo bench --bench requests
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --all-features --bench requests
//! ```

#[allow(dead_code)]
#[path = "../examples/demo.rs"]
mod demo;

use axum::body::Body;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::ServiceExt;

fn request(method: &str, uri: &str, cookie: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap()
}

/// A session with a user and some data, as a `Cookie` header value.
async fn session(app: &Router) -> String {
    let res = app
        .clone()
        .oneshot(
            Request::post("/login")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"user":"bench"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

fn bench_app(c: &mut Criterion, name: &str, app: Router, rt: &tokio::runtime::Runtime) {
    let cookie = rt.block_on(session(&app));
    let mut group = c.benchmark_group(name);
    group.bench_function("read GET /api/me", |b| {
        b.to_async(rt)
            .iter(|| app.clone().oneshot(request("GET", "/api/me", &cookie)))
    });
    group.bench_function("write POST /api/counter", |b| {
        b.to_async(rt).iter(|| {
            app.clone()
                .oneshot(request("POST", "/api/counter", &cookie))
        })
    });
    group.bench_function("no session GET /missing", |b| {
        b.to_async(rt)
            .iter(|| app.clone().oneshot(request("GET", "/missing", &cookie)))
    });
    group.finish();
}

fn requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let memory = rt.block_on(async {
        demo::app(sessionkit::MemoryStore::new(), None).expect("the demo's layer builds")
    });
    bench_app(c, "memory", memory, &rt);

    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let store = rt
            .block_on(sessionkit::RedisStore::connect(&url))
            .expect("REDIS_URL reachable");
        let redis = rt.block_on(async { demo::app(store, None).expect("the demo's layer builds") });
        bench_app(c, "redis", redis, &rt);
    }
}

criterion_group!(benches, requests);
criterion_main!(benches);
