//! What the layer logs: never a token, and a warning for a stale one.
//!
//! One test in its own binary with a global subscriber: tracing caches
//! per-callsite interest process-wide, so a thread-local subscriber can miss
//! events that other tests' threads registered first.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit::Regeneration;
use sessionkit::{ManualClock, MemoryStore, SessionLayer};
use support::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_appear_in_logs_and_stale_tokens_are_warned_about() {
    let buf = Buf::default();
    let writer = buf.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let clock = ManualClock::new();
    let app = routes::basic(user(1, "ada")).layer(
        SessionLayer::builder(MemoryStore::with_clock(clock.clone()))
            .clock(clock.clone())
            .regeneration(
                Regeneration::every(Duration::from_secs(60)).grace(Duration::from_secs(10)),
            )
            .build(),
    );

    let mut seen = Vec::new();
    let t1 = send(&app, post("/count", None)).await.cookie().unwrap();
    clock.advance(Duration::from_secs(61));
    let t2 = send(&app, get("/read", Some(&t1))).await.cookie().unwrap();
    let t3 = send(&app, post("/login", Some(&t2)))
        .await
        .cookie()
        .unwrap();
    clock.advance(Duration::from_secs(61));
    let t4 = send(&app, get("/read", Some(&t3))).await.cookie().unwrap();
    send(&app, get("/read", Some(&t4))).await;
    clock.advance(Duration::from_secs(11));
    // t3 was replaced 11 s ago with a 10 s grace: stale.
    send(&app, get("/read", Some(&t3))).await;
    send(&app, post("/logout", Some(&t4))).await;
    seen.extend([t1, t2, t3, t4]);

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("session token rotated"), "{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("grace window")),
        "{logs}"
    );
    for token in seen {
        assert!(!logs.contains(&token), "a token in the logs");
        // A token is its session's id (a public handle, which logs may
        // name) and a secret: no 16 characters of the secret appear.
        let secret = &token[token.len() - 43..];
        for part in [&secret[..16], &secret[16..32], &secret[27..]] {
            assert!(!logs.contains(part), "part of a token's secret in the logs");
        }
    }
}
