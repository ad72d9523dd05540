//! Arbitrary column values in a session's row (a damaged database, rows a
//! later version wrote), read back through the real `SqliteStore`: loading,
//! saving to and rotating the session never panic; the row decodes or the
//! call fails with a store error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sessionkit::conformance::seal;
use sessionkit::store::{Delta, Load, NewSession, Rotation, Save, SessionStore};
use sessionkit::token::{Tag, Token};
use sessionkit::{SessionId, SqliteStore};

#[derive(Arbitrary, Debug)]
struct Columns {
    user_id: Option<String>,
    user_json: Option<String>,
    label: Option<String>,
    data: String,
    created_at: i64,
    last_seen: i64,
    idle_timeout: i64,
    absolute_deadline: Option<i64>,
    /// Mostly live: a row past its deadline is deleted before decoding.
    expires_at: Option<i64>,
    ttg: i64,
    rotated_at: Option<i64>,
    renew_token: bool,
    adopted: bool,
    resend_until: i64,
    previous_hash: Option<String>,
    grace_until: Option<i64>,
    sealed: Option<String>,
    version: i64,
    /// Text where the schema says INTEGER: SQLite stores what it is given.
    text_in_number: Option<String>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn store() -> &'static SqliteStore {
    static STORE: OnceLock<SqliteStore> = OnceLock::new();
    STORE.get_or_init(|| {
        runtime().block_on(async {
            let store = SqliteStore::connect("sqlite::memory:")
                .await
                .expect("an in-memory database");
            store.migrate().await.expect("the schema");
            store
        })
    })
}

fuzz_target!(|c: Columns| {
    let store = store();
    runtime().block_on(async {
        let token = Token::generate(&SessionId::generate(&Tag::random()));
        let id = token.session_id();
        let now = 1_000_000;
        store
            .create(&NewSession {
                id: id.clone(),
                token: token.digest(),
                now,
                idle_timeout: 60_000,
                absolute_deadline: None,
                user: None,
                label: None,
                device: None,
                data: Vec::new(),
            })
            .await
            .expect("create");
        let update = sqlx::query(
            "UPDATE sessionkit_sessions SET user_id = ?, user_json = ?, label = ?, data = ?, \
             created_at = ?, last_seen = ?, idle_timeout = ?, absolute_deadline = ?, \
             expires_at = ?, ttg = ?, rotated_at = ?, renew_token = ?, adopted = ?, \
             resend_until = ?, previous_hash = ?, grace_until = ?, sealed = ?, version = ? \
             WHERE id = ?",
        )
        .bind(c.user_id)
        .bind(c.user_json)
        .bind(c.label)
        .bind(c.data)
        .bind(c.created_at)
        .bind(c.last_seen)
        .bind(c.idle_timeout)
        .bind(c.absolute_deadline)
        .bind(c.expires_at.unwrap_or(i64::MAX))
        .bind(c.ttg)
        .bind(c.rotated_at)
        .bind(c.renew_token)
        .bind(c.adopted)
        .bind(c.resend_until)
        .bind(c.previous_hash)
        .bind(c.grace_until)
        .bind(c.sealed)
        .bind(c.version)
        .bind(id.as_str());
        update.execute(store.pool()).await.expect("update");
        if let Some(text) = c.text_in_number {
            sqlx::query("UPDATE sessionkit_sessions SET last_seen = ? WHERE id = ?")
                .bind(text)
                .bind(id.as_str())
                .execute(store.pool())
                .await
                .expect("update");
        }
        let _ = store
            .load(&Load {
                token: token.digest(),
                now,
                refresh_after: Some(0),
                cijs: 1_000,
            })
            .await;
        let mut delta = Delta::default();
        delta.set.push(("k".into(), "1".into()));
        let _ = store
            .save(&Save {
                id: id.clone(),
                delta,
                now,
            })
            .await;
        let next = Token::generate(&token.session_id());
        let _ = store
            .rotate(&Rotation {
                id: id.clone(),
                old: token.digest(),
                new: next.digest(),
                sealed: seal(&token, &next),
                now,
                ojs: 1_000,
                cijs: 500,
            })
            .await;
        // Whatever happened, the table is empty again for the next input.
        sqlx::query("DELETE FROM sessionkit_sessions")
            .execute(store.pool())
            .await
            .expect("delete");
    });
});
