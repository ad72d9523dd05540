//! [`SessionUser`]: what a type needs to be logged in.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A user that can be bound to a session with
/// [`Session::login`](crate::Session::login).
///
/// The whole object is stored in the session (as JSON), so handlers can read
/// it back with [`Session::user`](crate::Session::user) without a database
/// call; [`SessionManager::sync_user`](crate::SessionManager::sync_user)
/// pushes a changed object (a new role) into every live session of the user.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sessionkit::SessionUser;
///
/// #[derive(Serialize, Deserialize)]
/// struct User {
///     id: u64,
///     name: String,
/// }
///
/// impl SessionUser for User {
///     fn id(&self) -> String {
///         self.id.to_string()
///     }
/// }
/// ```
pub trait SessionUser: Serialize + DeserializeOwned {
    /// The user's stable, unique id: the key of the user's session index.
    fn id(&self) -> String;
}
