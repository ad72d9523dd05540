//! [`Access`]: how a route, or one opened session, uses its session.
//!
//! By default every use of a session is a use in the user's sense: loading
//! it slides its idle deadline, and a token older than the
//! [`Regeneration`](crate::Regeneration) policy allows is replaced. Two
//! kinds of routes want otherwise:
//!
//! - **Polling and notification endpoints** read the session without
//!   extending it ([`Access::silent`]); otherwise a page left open in a tab
//!   would keep an idle user logged in forever.
//! - **Responses that may never reach the client** (a large download, a
//!   long poll the client may abandon) should not carry a rotated token
//!   ([`Access::no_rotation`]); the rotation waits for the next ordinary
//!   request. The opposite, rotating on a sensitive route even when the
//!   token is not old yet, is [`Access::rotate_now`].
//!
//! `Access` is also a Tower [`Layer`](tower_layer::Layer): put it on the
//! routes that need it, inside [`SessionLayer`](crate::SessionLayer).
//!
//! ```
//! use axum::{routing::get, Router};
//! use sessionkit::{Access, MemoryStore, Session, SessionLayer};
//!
//! async fn unread(session: Session) -> Result<String, sessionkit::Error> {
//!     let n: u64 = session.get("unread")?.unwrap_or(0);
//!     Ok(n.to_string())
//! }
//!
//! async fn page(session: Session) -> Result<String, sessionkit::Error> {
//!     Ok(format!("hello {:?}", session.user_id()))
//! }
//!
//! let app: Router = Router::new()
//!     // Polled every few seconds: must not keep an idle user logged in,
//!     // and its answers are often dropped by the browser.
//!     .route(
//!         "/api/unread",
//!         get(unread).route_layer(Access::new().silent().no_rotation()),
//!     )
//!     .route("/", get(page))
//!     .layer(SessionLayer::builder(MemoryStore::new()).build());
//! ```
//!
//! A write is always a use: a silent route that changes the session slides
//! its deadline when the change is saved. [`Session::touch`](crate::Session::touch)
//! extends a session explicitly.

mod service;

pub use service::AccessService;

/// How a route (or a session opened with
/// [`SessionManager::open_with`](crate::SessionManager::open_with)) uses its
/// session. See the [module docs](self).
///
/// The default, [`Access::new`], extends the idle deadline and rotates a
/// due token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Access {
    silent: bool,
    rotation: RotationMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum RotationMode {
    /// Rotate a token that is due (or whose user changed).
    #[default]
    WhenDue,
    /// Leave the token alone; the next ordinary use rotates it.
    Never,
    /// Rotate now, due or not.
    Now,
}

impl Access {
    /// Extends the idle deadline, rotates a due token: what every route does
    /// unless told otherwise.
    pub const fn new() -> Self {
        Access {
            silent: false,
            rotation: RotationMode::WhenDue,
        }
    }

    /// Loading does not extend the idle deadline (dce-session's `silent_*`
    /// reads). Saving a change still does: a write is a use.
    pub const fn silent(mut self) -> Self {
        self.silent = true;
        self
    }

    /// No automatic rotation on this route, even for a due token or one
    /// whose user changed: its response may never reach the client, which
    /// would then hold a replaced token. The next route without this setting
    /// rotates it. [`Session::login`](crate::Session::login) and
    /// [`Session::regenerate`](crate::Session::regenerate) still replace the
    /// token when called.
    pub const fn no_rotation(mut self) -> Self {
        self.rotation = RotationMode::Never;
        self
    }

    /// Rotates the token on load even when it is not due (with the same
    /// grace window as an automatic rotation, unlike
    /// [`Session::regenerate`](crate::Session::regenerate), which kills the
    /// old token at once).
    pub const fn rotate_now(mut self) -> Self {
        self.rotation = RotationMode::Now;
        self
    }

    /// Whether loading extends the idle deadline.
    pub const fn extends(&self) -> bool {
        !self.silent
    }

    pub(crate) fn rotation(&self) -> RotationMode {
        self.rotation
    }
}
