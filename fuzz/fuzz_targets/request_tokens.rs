//! Arbitrary `Cookie` and session headers through the real layer: a request
//! never panics, and whatever it carries it is answered (strict mode: a
//! token that is not a session's is no token).
#![no_main]

use std::sync::OnceLock;

use http::{HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use sessionkit::{MemoryStore, Session, SessionLayer};
use tower::{Layer, Service, ServiceExt};


fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

async fn handle(req: Request<String>) -> Result<Response<String>, sessionkit::Error> {
    let session = req
        .extensions()
        .get::<Session>()
        .cloned()
        .ok_or(sessionkit::Error::MissingLayer)?;
    session.load().await?;
    // Reads only: nothing is stored, so the store stays empty however long
    // the fuzzer runs.
    let n: u64 = session.get("n")?.unwrap_or(0);
    Ok(Response::new(n.to_string()))
}

fuzz_target!(|data: &[u8]| {
    // The input is split in two: the Cookie header and the session header.
    let cut = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (cookie, header) = (&data[..cut], data.get(cut + 1..).unwrap_or_default());
    let mut req = Request::new(String::new());
    if let Ok(value) = HeaderValue::from_bytes(cookie) {
        req.headers_mut().append(http::header::COOKIE, value);
    }
    if let Ok(value) = HeaderValue::from_bytes(header) {
        req.headers_mut().append("x-session-id", value);
    }
    runtime().block_on(async {
        static LAYER: OnceLock<SessionLayer> = OnceLock::new();
        let layer = LAYER.get_or_init(|| SessionLayer::builder(MemoryStore::new()).build());
        let mut service = layer.layer(tower::service_fn(handle));
        let ready = service.ready().await.expect("the layer is always ready");
        let res = ready.call(req).await.expect("an answer");
        // The store is empty: no token, however it is spelled, finds a
        // session.
        assert_eq!(res.body(), "0");
        assert_eq!(res.status(), http::StatusCode::OK);
    });
});
