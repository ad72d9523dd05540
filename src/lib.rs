//! Server-side sessions for [Tower](https://docs.rs/tower) and
//! [axum](https://docs.rs/axum), done carefully.
//!
//! ```
//! use axum::{routing::get, Router};
//! use sessionkit::{MemoryStore, Session, SessionLayer};
//!
//! async fn counter(session: Session) -> Result<String, sessionkit::Error> {
//!     let n: u64 = session.get("counter")?.unwrap_or(0);
//!     session.insert("counter", n + 1)?;
//!     Ok(format!("{}", n + 1))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app: Router = Router::new()
//!     .route("/", get(counter))
//!     .layer(SessionLayer::builder(MemoryStore::new()).build());
//! # use tower::ServiceExt;
//! # let res = app.oneshot(http::Request::new(axum::body::Body::empty())).await.unwrap();
//! # assert!(res.headers().contains_key("set-cookie"));
//! # }
//! ```
//!
//! What you get:
//!
//! - **Lazy, one round trip.** A route that does not extract [`Session`]
//!   makes no store call; one that does loads the session, checks its
//!   deadlines and slides its idle deadline in a single store round trip.
//! - **Delta writes.** Only the keys a request changed are written, so
//!   concurrent requests changing different keys both keep their change, and
//!   a write never brings back a session that was logged out meanwhile.
//! - **Tokens are credentials.** 256 bits from the OS CSPRNG, accepted from
//!   a cookie or a header, never adopted when unknown (no fixation), stored
//!   only as hashes, and replaced at once on `login`/`regenerate`.
//! - **Automatic regeneration with a grace window** ([`Regeneration`]):
//!   tokens are replaced after a while, and parallel requests still carrying
//!   the old token all get the same replacement instead of being logged out.
//! - **User sessions.** [`SessionManager`] lists and revokes a user's
//!   sessions ("log out everywhere"), limits them, and pushes user changes.
//! - **Guards.** [`LoggedIn<U>`](guard) in a handler, or
//!   [`RequireLoginLayer`] on a router, answer 401 (or redirect to a login
//!   page) to requests without a logged-in user.
//! - **Stores.** [`MemoryStore`] by default; `RedisStore` (feature `redis`,
//!   Redis Cluster with `redis-cluster`) to share sessions between servers;
//!   `PostgresStore` (feature `postgres`) and `SqliteStore` (`sqlite`).
//!   Every change spanning several keys is atomic in the store.
//!
//! # Features
//!
//! - `axum` (default): the [`Session`] extractor and `IntoResponse` for [`Error`].
//! - `redis`, `redis-cluster`: `RedisStore`.
//! - `postgres`: `PostgresStore`; `sqlite`: `SqliteStore`.
//! - `conformance`: the store conformance suite, for store authors.
//! - `metrics`: counters, a gauge and histograms through the `metrics`
//!   facade; [`metrics`] lists their names and labels.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
pub mod clock;
mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod connection;
pub mod device;
mod error;
pub mod guard;
mod hub;
pub mod layer;
mod manager;
pub mod metrics;
mod regeneration;
mod session;
mod shared;
pub mod store;
pub mod token;
mod transport;
mod user;

pub use access::Access;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, StaleTokenPolicy, MAX_DURATION};
pub use connection::LiveSession;
pub use cookie::SameSite;
pub use device::{describe_user_agent, Device};
pub use error::Error;
pub use guard::RequireLoginLayer;
#[cfg(feature = "axum")]
pub use guard::{LoggedIn, LoginRejection};
pub use layer::{SessionLayer, SessionLayerBuilder};
pub use manager::SessionManager;
pub use regeneration::Regeneration;
pub use session::{CommitError, Session, TokenUpdate};
#[cfg(feature = "postgres")]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{MemoryStore, MemoryStoreBuilder, SessionStore};
#[cfg(feature = "redis")]
pub use store::{RedisStore, RedisStoreBuilder};
pub use token::SessionId;
pub use user::SessionUser;

/// Entry points for the fuzz targets (`fuzz/`), built only under
/// `cargo fuzz` (which sets `--cfg fuzzing`).
#[cfg(all(fuzzing, feature = "redis"))]
#[doc(hidden)]
pub mod fuzzing {
    /// See `store::redis::decode_any_reply`.
    pub fn redis_reply(bytes: &[u8]) {
        crate::store::redis::decode_any_reply(bytes);
    }
}

// Every Rust snippet of the README compiles, and runs unless marked
// `no_run` (`cargo test --doc --all-features`).
#[cfg(all(
    doctest,
    feature = "redis-cluster",
    feature = "postgres",
    feature = "sqlite"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
