//! The Lua scripts behind every store operation, and how their arguments
//! are laid out.
//!
//! Each operation is one script, so it is atomic and costs one round trip
//! (`EVALSHA`; the `redis` crate loads the script and retries once when a
//! server answers `NOSCRIPT`, after a restart for example). Each script is
//! the shared prelude (`lua/prelude.lua`: key layout, liveness, TTLs,
//! removal) followed by its own body.

use std::sync::LazyLock;

use redis::{Script, ScriptInvocation};

use crate::store::{Delta, NewSession};

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

script!(LOAD, "load.lua");
script!(CREATE, "create.lua");
script!(SAVE, "save.lua");
script!(ROTATE, "rotate.lua");
script!(REGENERATE, "regenerate.lua");
script!(LOGIN, "login.lua");
script!(DESTROY, "destroy.lua");
script!(LIST, "list.lua");
script!(REVOKE, "revoke.lua");
script!(SYNC_USER, "sync_user.lua");
script!(CONNECT, "connect.lua");
script!(FETCH, "fetch.lua");
script!(CONNECTIONS, "connections.lua");

/// Appends a delta in the layout `read_delta` in the prelude expects.
pub(super) fn push_delta(inv: &mut ScriptInvocation<'_>, delta: &Delta) {
    inv.arg(if delta.clear { "1" } else { "0" })
        .arg(
            delta
                .idle_timeout
                .map(|t| t.to_string())
                .unwrap_or_default(),
        )
        .arg(present(delta.label.as_deref()))
        .arg(delta.remove.len());
    for key in &delta.remove {
        inv.arg(key);
    }
    inv.arg(delta.set.len());
    for (key, value) in &delta.set {
        inv.arg(key).arg(value);
    }
}

/// Appends a session to create, in the layout `new_session` in the prelude
/// expects.
pub(super) fn push_new_session(inv: &mut ScriptInvocation<'_>, new: &NewSession) {
    let user = new.user.as_ref();
    inv.arg(new.id.as_str())
        .arg(&new.token.hash)
        .arg(new.now)
        .arg(new.idle_timeout)
        .arg(
            new.absolute_deadline
                .map(|d| d.to_string())
                .unwrap_or_default(),
        )
        .arg(present(user.map(|u| u.id.as_str())))
        .arg(user.map_or("", |u| u.json.as_str()))
        .arg(present(new.label.as_deref()));
}

/// Appends key/value pairs, preceded by their number.
pub(super) fn push_pairs(inv: &mut ScriptInvocation<'_>, pairs: &[(String, String)]) {
    inv.arg(pairs.len());
    for (key, value) in pairs {
        inv.arg(key).arg(value);
    }
}

/// An optional text as scripts take and give it: `=` and the text, or empty
/// for none, so that an empty text stays distinguishable from none.
pub(super) fn present(text: Option<&str>) -> String {
    text.map(|t| format!("={t}")).unwrap_or_default()
}
