//! Routes the test apps share, without a layer: each app adds its own
//! routes and its layer. Generic over the router's state, so apps with a
//! state of their own can merge them too.

use axum::routing;
use axum::Router;
use sessionkit::Session;

use super::User;

/// `POST /count` (increments `n`, answers the new value) and `GET /read`
/// (answers `n`).
pub fn counter<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/count",
            routing::post(|s: Session| async move {
                let n: u64 = s.get("n")?.unwrap_or(0);
                s.insert("n", n + 1)?;
                Ok::<_, sessionkit::Error>((n + 1).to_string())
            }),
        )
        .route(
            "/read",
            routing::get(|s: Session| async move {
                let n: u64 = s.get("n")?.unwrap_or(0);
                Ok::<_, sessionkit::Error>(n.to_string())
            }),
        )
}

/// The privilege changes: `POST /login` as `user` (answers `in`),
/// `POST /logout` (`out`) and `POST /regenerate` (`regenerated`).
pub fn privileges<S: Clone + Send + Sync + 'static>(user: User) -> Router<S> {
    Router::new()
        .route(
            "/login",
            routing::post(move |s: Session| {
                let user = user.clone();
                async move {
                    s.login(&user).await?;
                    Ok::<_, sessionkit::Error>("in")
                }
            }),
        )
        .route(
            "/logout",
            routing::post(|s: Session| async move {
                s.logout().await?;
                Ok::<_, sessionkit::Error>("out")
            }),
        )
        .route(
            "/regenerate",
            routing::post(|s: Session| async move {
                s.regenerate().await?;
                Ok::<_, sessionkit::Error>("regenerated")
            }),
        )
}

/// Both of the above: the app most tests need.
pub fn basic<S: Clone + Send + Sync + 'static>(user: User) -> Router<S> {
    counter().merge(privileges(user))
}
