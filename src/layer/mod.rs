//! The middleware: [`SessionLayer`], its builder and service.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use sessionkit::{MemoryStore, Session, SessionLayer};
//!
//! async fn counter(session: Session) -> Result<String, sessionkit::Error> {
//!     let n: u64 = session.get("counter")?.unwrap_or(0);
//!     session.insert("counter", n + 1)?;
//!     Ok(format!("visit number {}", n + 1))
//! }
//!
//! let layer = SessionLayer::builder(MemoryStore::new())
//!     .idle_timeout(Duration::from_secs(30 * 60))
//!     .build();
//! let app: Router = Router::new().route("/", get(counter)).layer(layer);
//! ```
//!
//! For each request the service reads the token (cookie, then header),
//! puts a lazy [`Session`](crate::Session) in the request's extensions and
//! calls the inner service. If the handler extracted the session, the
//! response future then saves what changed and sets the token the client
//! must hold, before the response is handed on. A request that never
//! extracts the session costs no store call.

mod future;
#[allow(clippy::module_inception)]
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::{SessionLayer, SessionLayerBuilder};
pub use service::SessionService;
