//! The line-based TCP example (`examples/line_server.rs`) over real
//! sockets, on every store: sessions opened from tokens a non-HTTP client
//! sends, with the same guarantees as through the layer.

mod support;

#[allow(dead_code)]
#[path = "../examples/line_server.rs"]
mod line_server;

use std::time::Duration;

use sessionkit::{ManualClock, Regeneration, SessionLayer};
use support::stores::{on_every_store, Backend, TestStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

on_every_store! {
    a_client_keeps_its_session_across_requests_with_the_token_it_is_given,
    a_login_replaces_the_token_and_the_old_one_stops_working,
    a_logout_tells_the_client_to_drop_its_token,
    a_made_up_or_malformed_token_is_never_adopted,
    a_due_rotation_reaches_the_client_and_racing_requests_get_the_same_token,
    a_peek_does_not_extend_the_session,
}

const SFR: Duration = Duration::from_secs(600);

struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    clock: ManualClock,
    _store: TestStore,
}

async fn client(backend: Backend) -> Client {
    let clock = ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let manager = SessionLayer::builder(store.store.clone())
        .clock(clock.clone())
        .idle_timeout(Duration::from_secs(1800))
        .regeneration(Regeneration::every(SFR))
        .build()
        .manager();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(line_server::serve(listener, manager));
    let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
    Client {
        read: BufReader::new(read),
        write,
        clock,
        _store: store,
    }
}

/// An answer: what to do with the token, and the result.
#[derive(Debug, PartialEq)]
enum Update {
    Keep,
    Replace(String),
    Drop,
}

impl Client {
    async fn ask(&mut self, token: Option<&str>, command: &str) -> (Update, String) {
        let line = format!("{} {command}\n", token.unwrap_or("-"));
        self.write.write_all(line.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), self.read.read_line(&mut answer))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let (update, result) = answer
            .trim_end()
            .split_once(' ')
            .expect("update and result");
        let update = match update {
            "=" => Update::Keep,
            "-" => Update::Drop,
            t => Update::Replace(t.strip_prefix('+').expect("+token").to_owned()),
        };
        (update, result.to_owned())
    }

    /// A new session holding `colour`, and its token.
    async fn start(&mut self) -> String {
        match self.ask(None, "SET colour blue").await {
            (Update::Replace(token), ok) if ok == "OK" => token,
            other => panic!("a first write must create a session: {other:?}"),
        }
    }
}

async fn a_client_keeps_its_session_across_requests_with_the_token_it_is_given(backend: Backend) {
    let mut c = client(backend).await;
    let token = c.start().await;
    assert_eq!(
        c.ask(Some(&token), "GET colour").await,
        (Update::Keep, "blue".into())
    );
    assert_eq!(
        c.ask(Some(&token), "SET size 9").await,
        (Update::Keep, "OK".into())
    );
    assert_eq!(c.ask(Some(&token), "GET size").await.1, "9");
    assert_eq!(c.ask(Some(&token), "GET colour").await.1, "blue");
}

async fn a_login_replaces_the_token_and_the_old_one_stops_working(backend: Backend) {
    let mut c = client(backend).await;
    let anonymous = c.start().await;
    let (update, ok) = c.ask(Some(&anonymous), "LOGIN alice").await;
    assert_eq!(ok, "OK");
    let Update::Replace(token) = update else {
        panic!("a login must replace the token: {update:?}");
    };
    assert_ne!(token, anonymous);
    assert_eq!(c.ask(Some(&token), "WHOAMI").await.1, "alice");
    assert_eq!(
        c.ask(Some(&token), "GET colour").await.1,
        "blue",
        "carried over"
    );
    assert_eq!(
        c.ask(Some(&anonymous), "WHOAMI").await,
        (Update::Keep, "(anonymous)".into()),
        "the pre-login token must be dead"
    );
}

async fn a_logout_tells_the_client_to_drop_its_token(backend: Backend) {
    let mut c = client(backend).await;
    let anonymous = c.start().await;
    let Update::Replace(token) = c.ask(Some(&anonymous), "LOGIN bob").await.0 else {
        panic!("a login must replace the token");
    };
    assert_eq!(
        c.ask(Some(&token), "LOGOUT").await,
        (Update::Drop, "OK".into())
    );
    assert_eq!(c.ask(Some(&token), "GET colour").await.1, "(nil)");
}

async fn a_made_up_or_malformed_token_is_never_adopted(backend: Backend) {
    let mut c = client(backend).await;
    let made_up = support::made_up_token('A');
    for token in [made_up.as_str(), "short", "é"] {
        assert_eq!(
            c.ask(Some(token), "GET colour").await,
            (Update::Keep, "(nil)".into())
        );
    }
    let (update, _) = c.ask(Some(&made_up), "SET colour red").await;
    match update {
        Update::Replace(new) => assert_ne!(new, made_up, "the client's own value was adopted"),
        other => panic!("a write must create a session with a new token: {other:?}"),
    }
}

async fn a_due_rotation_reaches_the_client_and_racing_requests_get_the_same_token(
    backend: Backend,
) {
    let mut c = client(backend).await;
    let token = c.start().await;
    c.clock.advance(SFR + Duration::from_secs(1));
    let (update, colour) = c.ask(Some(&token), "GET colour").await;
    assert_eq!(colour, "blue");
    let Update::Replace(new) = update else {
        panic!("a due token must be rotated: {update:?}");
    };
    // A request sent with the old token before the client saw the answer.
    assert_eq!(
        c.ask(Some(&token), "GET colour").await,
        (Update::Replace(new.clone()), "blue".into())
    );
    assert_eq!(
        c.ask(Some(&new), "GET colour").await,
        (Update::Keep, "blue".into())
    );
}

async fn a_peek_does_not_extend_the_session(backend: Backend) {
    let mut c = client(backend).await;
    let mut token = c.start().await;
    for _ in 0..3 {
        c.clock.advance(Duration::from_secs(500));
        let (update, colour) = c.ask(Some(&token), "PEEK colour").await;
        assert_eq!(colour, "blue");
        // Rotation still applies to a silent read; it is not a use.
        if let Update::Replace(new) = update {
            token = new;
        }
    }
    c.clock.advance(Duration::from_secs(301));
    assert_eq!(
        c.ask(Some(&token), "PEEK colour").await.1,
        "(nil)",
        "peeks alone must let the session idle out"
    );
}
