//! The demo app, served on a loopback port and driven like a browser would:
//! HTTP with cookies and a real WebSocket client.

#[allow(dead_code)]
#[path = "../examples/demo.rs"]
mod demo;
mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sessionkit::{MemoryStore, SessionStore};
use tokio_tungstenite::tungstenite;

/// A demo server: in this process, or a separate `demo` process.
struct Demo {
    base: String,
    addr: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    process: Option<std::process::Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The demo example's binary, as `cargo run --example demo` runs it.
fn demo_binary() -> std::path::PathBuf {
    // Tests run from target/<profile>/deps; examples are built next to it.
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("demo"))
        .filter(|bin| bin.exists())
        .expect(
            "the demo binary: build it with `cargo build --all-features --example demo` (scripts/test.sh does)",
        )
}

/// Runs the demo's binary with its store at `url` (`REDIS_URL` or
/// `DATABASE_URL`, by the URL's scheme).
async fn spawn_demo(url: &str) -> Demo {
    let store_var = if url.starts_with("redis") {
        "REDIS_URL"
    } else {
        "DATABASE_URL"
    };
    let bin = demo_binary();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let process = std::process::Command::new(bin)
        .env("PORT", port.to_string())
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .env(store_var, url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let demo = Demo {
        base: format!("http://{addr}"),
        addr,
        task: None,
        process: Some(process),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the demo did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    demo
}

async fn start(store: impl SessionStore) -> Demo {
    let app = demo::app(store, None).expect("the demo's layer builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = demo::serve(listener, app).await;
    });
    Demo {
        base: format!("http://{addr}"),
        addr,
        task: Some(task),
        process: None,
    }
}

/// A browser: its own cookie jar.
struct Browser {
    client: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    base: String,
}

impl Browser {
    fn new(demo: &Demo) -> Self {
        Self::with_jar(demo, Default::default())
    }

    /// The same browser (same cookies) talking to another server.
    fn on(&self, demo: &Demo) -> Self {
        Self::with_jar(demo, self.jar.clone())
    }

    fn with_jar(demo: &Demo, jar: std::sync::Arc<reqwest::cookie::Jar>) -> Self {
        Browser {
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar,
            base: demo.base.clone(),
        }
    }
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }
    async fn json(&self, method: &str, path: &str) -> Value {
        let (_, body) = self.call(method, path, None).await;
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }
    async fn login(&self, name: &str) {
        let (status, _) = self
            .call("POST", "/login", Some(json!({ "user": name })))
            .await;
        assert_eq!(status, 200);
    }
    /// The `Cookie` header this browser sends.
    fn cookie_header(&self) -> String {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().unwrap();
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The WebSocket handshake this browser sends to `demo`'s `/ws`.
    fn ws_request(&self, demo: &Demo) -> tungstenite::handshake::client::Request {
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/ws",
            demo.addr
        ))
        .unwrap();
        req.headers_mut()
            .insert("cookie", self.cookie_header().parse().unwrap());
        req
    }

    async fn open_ws(&self, demo: &Demo) -> Socket {
        tokio_tungstenite::connect_async(self.ws_request(demo))
            .await
            .unwrap()
            .0
    }
}

#[tokio::test]
async fn counter_me_and_login_routes() {
    let d = start(MemoryStore::new()).await;
    let b = Browser::new(&d);
    let me = b.json("GET", "/api/me").await;
    assert_eq!(me["user"], Value::Null);
    assert_eq!(me["session"], Value::Null, "no session before a write");
    assert_eq!(me["counter"], 0);
    assert_eq!(me["ttg_ms"], Value::Null);
    assert_eq!(me["regeneration"], Value::Null);
    assert!(me["now_ms"].as_u64().is_some());
    assert_eq!(b.json("POST", "/api/counter").await, json!({"counter": 1}));
    assert_eq!(b.json("POST", "/api/counter").await, json!({"counter": 2}));
    b.login("alice").await;
    let me = b.json("GET", "/api/me").await;
    assert_eq!(me["user"], "alice");
    assert_eq!(me["counter"], 2, "the anonymous counter survives login");
    assert_eq!(me["token_age_secs"], 0);
    assert!(me["session"].as_str().is_some());

    b.call("POST", "/logout", None).await;
    assert_eq!(b.json("GET", "/api/me").await["user"], Value::Null);
}

#[tokio::test]
async fn the_page_is_served_without_touching_the_store() {
    let d = start(support::Broken::Down).await;
    let (status, page) = Browser::new(&d).call("GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("sessionkit demo"));
    // The API says the store is down, which the page shows as a banner.
    let (status, body) = Browser::new(&d).call("POST", "/api/counter", None).await;
    assert_eq!(status, 503);
    assert_eq!(body, "session store unavailable");
}

#[tokio::test]
async fn a_user_name_is_trimmed_counted_in_characters_and_free_of_control_characters() {
    let d = start(MemoryStore::new()).await;
    let b = Browser::new(&d);
    // 32 characters of 2 bytes each: fine.
    let (status, body) = b
        .call(
            "POST",
            "/login",
            Some(json!({ "user": "  é".to_owned() + &"é".repeat(31) + " " })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["user"],
        "é".repeat(32)
    );
    for (name, message) in [
        ("   ", "Type a user name."),
        (&*"x".repeat(33), "A user name has at most 32 characters."),
        (
            "eve\u{7}",
            "A user name may not contain control characters.",
        ),
        ("a\nb", "A user name may not contain control characters."),
    ] {
        let (status, body) = Browser::new(&d)
            .call("POST", "/login", Some(json!({ "user": name })))
            .await;
        assert_eq!((status, body.as_str()), (400, message), "{name:?}");
    }
}

#[tokio::test]
async fn a_count_for_a_user_whose_session_ended_is_refused_without_starting_a_session() {
    let d = start(MemoryStore::new()).await;
    let phone = Browser::new(&d);
    let laptop = Browser::new(&d);
    phone.login("alice").await;
    laptop.login("alice").await;
    let (status, body) = phone
        .call("POST", "/api/counter?expect_user=alice", None)
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"counter":1}"#));
    assert_eq!(
        laptop.json("POST", "/api/logout-others").await["revoked"],
        1
    );

    let res = phone
        .client
        .post(format!("{}/api/counter?expect_user=alice", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 409);
    assert!(res.headers().get("set-cookie").is_none(), "no new session");
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({ "error": "session ended", "user": null })
    );
    // Without the expectation it counts, for a new anonymous session.
    assert_eq!(
        phone.json("POST", "/api/counter").await,
        json!({"counter": 1})
    );
}

#[tokio::test]
async fn the_session_list_names_devices_and_addresses() {
    let d = start(MemoryStore::new()).await;
    let b = Browser::new(&d);
    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let res = b
        .client
        .post(format!("{}/login", d.base))
        .header("user-agent", CHROME)
        .json(&json!({ "user": "alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let list = b.json("GET", "/api/sessions").await;
    assert_eq!(list[0]["device"], "Chrome 131 on Linux");
    assert_eq!(list[0]["address"], "127.0.0.1");
    assert_eq!(list[0]["current"], true);
    assert!(list[0]["created_at_ms"].as_u64().is_some());
    assert!(list[0]["last_seen_ms"].as_u64().is_some());
}

fn settings(vars: &[(&str, &str)]) -> Result<demo::Settings, String> {
    demo::Settings::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

#[test]
fn settings_default_to_port_3000_and_no_regeneration() {
    let s = settings(&[]).unwrap();
    assert_eq!((s.port, s.regeneration), (3000, None));
    let s = settings(&[
        ("PORT", "3001"),
        ("SESSION_SFR_SECS", "30"),
        ("SESSION_OJS_SECS", "10"),
        ("SESSION_CIJS_SECS", "5"),
    ])
    .unwrap();
    let policy = s.regeneration.unwrap();
    assert_eq!(s.port, 3001);
    assert_eq!(
        (
            policy.interval(),
            policy.grace_window(),
            policy.resend_window()
        ),
        (
            Duration::from_secs(30),
            Duration::from_secs(10),
            Duration::from_secs(5)
        )
    );
}

#[test]
fn a_bad_setting_is_an_error_naming_the_variable_and_the_rule() {
    for (vars, expected) in [
        (&[("SESSION_SFR_SECS", "3s")][..], "SESSION_SFR_SECS=\"3s\": expected a whole number of seconds"),
        (&[("SESSION_SFR_SECS", "0")], "SESSION_SFR_SECS=\"0\": expected a whole number of seconds, at least 1"),
        (&[("SESSION_SFR_SECS", "-5")], "SESSION_SFR_SECS=\"-5\""),
        (&[("SESSION_SFR_SECS", "30"), ("SESSION_OJS_SECS", "30")], "SESSION_OJS_SECS=30 must be shorter than SESSION_SFR_SECS=30"),
        (&[("SESSION_SFR_SECS", "30"), ("SESSION_OJS_SECS", "10"), ("SESSION_CIJS_SECS", "6")], "SESSION_CIJS_SECS=6 must be at most half of the grace window (SESSION_OJS_SECS, 10 s here)"),
        (&[("SESSION_OJS_SECS", "10")], "SESSION_OJS_SECS is set but SESSION_SFR_SECS is not"),
        (&[("SESSION_CIJS_SECS", "5")], "SESSION_CIJS_SECS is set but SESSION_SFR_SECS is not"),
        (&[("PORT", "http")], "PORT=\"http\": expected a port number"),
        (&[("SESSION_SFR_SECS", "99999999999999")], "100 years"),
    ] {
        let err = settings(vars).unwrap_err();
        assert!(err.starts_with(expected) || err.contains(expected), "{vars:?}: {err}");
    }
}

/// Runs the demo's binary with `vars` and waits (at most 10 s) for it to
/// exit: its exit code and stderr.
fn run_demo_expecting_exit(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(demo_binary());
    cmd.env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .env_remove("SESSION_SFR_SECS")
        .env_remove("SESSION_OJS_SECS")
        .env_remove("SESSION_CIJS_SECS")
        .env("PORT", "0")
        .env("RUST_LOG", "off")
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not exit with {vars:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

#[test]
fn the_demo_exits_with_code_2_and_one_line_on_a_bad_setting() {
    for vars in [
        &[("SESSION_SFR_SECS", "3s")][..],
        &[("SESSION_SFR_SECS", "10"), ("SESSION_OJS_SECS", "20")],
    ] {
        let (code, stderr) = run_demo_expecting_exit(vars);
        assert_eq!(code, Some(2), "{vars:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("demo: SESSION_"), "{stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("{ "),
            "{stderr}"
        );
    }
}

#[test]
fn the_demo_exits_with_code_1_and_one_line_when_the_store_is_unreachable() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let (code, stderr) = run_demo_expecting_exit(&[("REDIS_URL", &url)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("demo: REDIS_URL: cannot connect to the session store: session store"),
        "{stderr}"
    );
    assert!(!stderr.contains("StoreError"), "no Debug output: {stderr}");
}

#[tokio::test]
async fn a_user_cannot_see_or_revoke_another_users_sessions() {
    let d = start(MemoryStore::new()).await;
    let alice_phone = Browser::new(&d);
    let alice_laptop = Browser::new(&d);
    let bob = Browser::new(&d);
    alice_phone.login("alice").await;
    alice_laptop.login("alice").await;
    bob.login("bob").await;

    assert_eq!(
        Browser::new(&d).call("GET", "/api/sessions", None).await.0,
        401
    );
    let alice_list = alice_phone.json("GET", "/api/sessions").await;
    let alice_list = alice_list.as_array().unwrap();
    assert_eq!(alice_list.len(), 2);
    assert_eq!(
        alice_list.iter().filter(|s| s["current"] == true).count(),
        1
    );
    let bob_list = bob.json("GET", "/api/sessions").await;
    assert_eq!(
        bob_list.as_array().unwrap().len(),
        1,
        "bob sees only his own"
    );
    let bob_id = bob_list[0]["id"].as_str().unwrap().to_owned();
    let laptop_id = alice_list.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob tries alice's session id, a made-up one and garbage: 404 each.
    for id in [
        laptop_id.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAA",
        "../../etc",
    ] {
        let (status, _) = bob
            .call("DELETE", &format!("/api/sessions/{id}"), None)
            .await;
        assert_eq!(status, 404, "{id}");
    }
    assert_eq!(alice_laptop.json("GET", "/api/me").await["user"], "alice");
    // Alice's phone can't revoke bob either.
    let (status, _) = alice_phone
        .call("DELETE", &format!("/api/sessions/{bob_id}"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(bob.json("GET", "/api/me").await["user"], "bob");
    // But it can revoke her laptop.
    let (status, _) = alice_phone
        .call("DELETE", &format!("/api/sessions/{laptop_id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        alice_laptop.json("GET", "/api/me").await["user"],
        Value::Null
    );

    // Log out others / everywhere.
    alice_laptop.login("alice").await;
    assert_eq!(
        alice_phone.json("POST", "/api/logout-others").await["revoked"],
        1
    );
    assert_eq!(
        alice_laptop.json("GET", "/api/me").await["user"],
        Value::Null
    );
    assert_eq!(alice_phone.json("GET", "/api/me").await["user"], "alice");
    alice_laptop.login("alice").await;
    assert_eq!(
        alice_phone.json("POST", "/api/logout-everywhere").await["revoked"],
        2
    );
    assert_eq!(
        alice_phone.json("GET", "/api/me").await["user"],
        Value::Null
    );
    assert_eq!(
        alice_laptop.json("GET", "/api/me").await["user"],
        Value::Null
    );
    assert_eq!(bob.json("GET", "/api/me").await["user"], "bob");
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(2), socket.next()).await {
            Ok(Some(Ok(tungstenite::Message::Text(t)))) => {
                return serde_json::from_str(&t).unwrap()
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_socket_greets_echoes_and_closes_when_the_session_is_revoked() {
    let d = start(MemoryStore::new()).await;
    let phone = Browser::new(&d);
    let laptop = Browser::new(&d);
    phone.json("POST", "/api/counter").await;
    phone.login("carol").await;
    laptop.login("carol").await;

    let mut socket = phone.open_ws(&d).await;
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["state"]["user"], "carol");
    assert_eq!(hello["state"]["counter"], 1);
    phone.json("POST", "/api/counter").await;
    socket.send(tungstenite::Message::text("?")).await.unwrap();
    let echo = next_json(&mut socket).await;
    assert_eq!(echo["type"], "state");
    assert_eq!(echo["state"]["counter"], 2, "fresh data on every message");

    let conns = laptop.json("GET", "/api/connections").await;
    assert_eq!(conns.as_array().unwrap().len(), 1);
    assert!(conns[0]["node"].as_str().is_some_and(|n| !n.is_empty()));

    // The laptop revokes the phone's session: the phone's socket closes with
    // 1008 within a second.
    revoke_other_and_expect_close(&laptop, &mut socket).await;
    // The registry is empty once the socket is gone.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !laptop
        .json("GET", "/api/connections")
        .await
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "connection still registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Revoking a session's sibling and waiting for the close frame.
async fn revoke_other_and_expect_close(revoker: &Browser, socket: &mut Socket) {
    let sessions = revoker.json("GET", "/api/sessions").await;
    let other = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    let (status, _) = revoker
        .call("DELETE", &format!("/api/sessions/{other}"), None)
        .await;
    assert_eq!(status, 204);
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(1), socket.next()).await {
            Ok(Some(Ok(tungstenite::Message::Close(frame)))) => {
                break frame.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("not closed within a second: {other:?}"),
        }
    };
    // The page shows the reason as it comes.
    assert_eq!(frame, Some((1008, "session revoked".to_owned())));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn two_demo_processes_on_one_redis_share_sessions() {
    let redis = support::redis::RedisServer::start();
    two_processes_share_sessions(&redis.url()).await;
}

#[tokio::test]
async fn two_demo_processes_on_one_postgresql_share_sessions() {
    let postgres = support::postgres::PgServer::start();
    two_processes_share_sessions(postgres.url()).await;
}

async fn two_processes_share_sessions(url: &str) {
    let a = spawn_demo(url).await;
    let b = spawn_demo(url).await;

    let phone = Browser::new(&a);
    phone.login("dora").await;
    assert_eq!(phone.json("POST", "/api/counter").await["counter"], 1);
    // The same cookie on the other process: same session.
    let phone_on_b = phone.on(&b);
    let me = phone_on_b.json("GET", "/api/me").await;
    assert_eq!(me["user"], "dora");
    assert_eq!(me["counter"], 1);
    assert_eq!(phone_on_b.json("POST", "/api/counter").await["counter"], 2);
    assert_eq!(phone.json("GET", "/api/me").await["counter"], 2);

    // A socket held by process A closes within a second of a revocation
    // made through process B (the demo's heartbeat is 5 s: only the
    // store's session-ended feed can be that fast).
    let mut socket = phone.open_ws(&a).await;
    assert_eq!(next_json(&mut socket).await["state"]["user"], "dora");
    let laptop = Browser::new(&b);
    laptop.login("dora").await;
    assert_eq!(
        laptop
            .json("GET", "/api/connections")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    revoke_other_and_expect_close(&laptop, &mut socket).await;
    assert_eq!(phone.json("GET", "/api/me").await["user"], Value::Null);
}

#[tokio::test]
async fn the_demo_binary_serves_sessionkit_metrics_in_prometheus_format() {
    let demo = spawn_demo(&support::stores::sqlite_url()).await;
    let browser = Browser::new(&demo);
    browser.login("mia").await;
    assert_eq!(browser.json("POST", "/api/counter").await["counter"], 1);

    let res = reqwest::get(format!("{}/metrics", demo.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = res.text().await.unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
            .to_owned()
    };
    assert!(line("sessionkit_logins_total ").ends_with(" 1"));
    line("sessionkit_sessions_created_total ");
    line("sessionkit_store_call_duration_seconds_count{operation=\"login\"}");
    line("sessionkit_store_call_duration_seconds_count{operation=\"load\"}");
    line("# HELP sessionkit_logins_total");
}

#[tokio::test]
async fn a_socket_opens_from_the_sites_own_pages_and_not_from_another_origin() {
    let demo = start(MemoryStore::new()).await;
    let alice = Browser::new(&demo);
    alice.login("alice").await;
    let handshake = |origin: &str| {
        let mut req = alice.ws_request(&demo);
        req.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    // A sibling subdomain is the same site: its page's handshake carries
    // the cookie, so only the origin tells it apart.
    for foreign in [
        "http://evil.localhost:1",
        "null",
        "http://127.0.0.1.evil.example",
    ] {
        match handshake(foreign).await {
            Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403, "{foreign}"),
            other => panic!(
                "{foreign}: a foreign page's socket opened: {:?}",
                other.map(|r| r.1)
            ),
        }
    }
    let (mut socket, res) = handshake(&format!("http://{}", demo.addr)).await.unwrap();
    assert_eq!(res.status(), 101);
    assert_eq!(next_json(&mut socket).await["type"], "hello");
}

/// A socket opened without a cookie: what a client holding its token
/// itself (a native app, websocat) sees.
async fn open_ws_without_cookie(demo: &Demo) -> Socket {
    let (socket, res) = tokio_tungstenite::connect_async(format!("ws://{}/ws", demo.addr))
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    socket
}

async fn send_json(socket: &mut Socket, value: Value) {
    socket
        .send(tungstenite::Message::text(value.to_string()))
        .await
        .unwrap();
}

/// `GET /api/me` with `token` in the `x-session-id` header, no cookie.
async fn me_with_header(demo: &Demo, token: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/api/me", demo.base))
        .header("x-session-id", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_socket_without_a_cookie_logs_in_counts_and_logs_out_over_its_messages() {
    let d = start(MemoryStore::new()).await;
    let mut socket = open_ws_without_cookie(&d).await;
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["state"]["user"], Value::Null);
    assert_eq!(hello["state"]["session"], Value::Null);

    // A name is checked as for POST /login; a refusal changes no token.
    send_json(&mut socket, json!({ "op": "login", "user": "   " })).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "error", "message": "Type a user name." })
    );
    send_json(&mut socket, json!({ "op": "fly" })).await;
    assert_eq!(next_json(&mut socket).await["type"], "error");

    send_json(&mut socket, json!({ "op": "login", "user": " erin " })).await;
    let token = next_json(&mut socket).await;
    assert_eq!(token["type"], "token", "the token comes before the answer");
    let token = token["token"].as_str().unwrap().to_owned();
    let state = next_json(&mut socket).await;
    assert_eq!(state["type"], "state");
    assert_eq!(state["state"]["user"], "erin");
    let session = state["state"]["session"].as_str().unwrap().to_owned();

    // The token works over HTTP, in the header or the cookie.
    let me = me_with_header(&d, &token).await;
    assert_eq!(
        (&me["user"], &me["session"]),
        (&json!("erin"), &json!(session))
    );

    // +1 over the socket: the same session, no new token.
    send_json(&mut socket, json!({ "op": "counter" })).await;
    let state = next_json(&mut socket).await;
    assert_eq!(state["type"], "state", "no token message: {state}");
    assert_eq!(state["state"]["counter"], 1);
    let me: Value = reqwest::Client::new()
        .get(format!("{}/api/me", d.base))
        .header("cookie", format!("sessionkit={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((&me["user"], &me["counter"]), (&json!("erin"), &json!(1)));

    // A logout over the socket drops the token and leaves the socket open,
    // anonymous.
    send_json(&mut socket, json!({ "op": "logout" })).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "token", "token": null })
    );
    assert_eq!(next_json(&mut socket).await["state"]["user"], Value::Null);
    socket.send(tungstenite::Message::text("?")).await.unwrap();
    let state = next_json(&mut socket).await;
    assert_eq!(
        (&state["type"], &state["state"]["user"]),
        (&json!("state"), &Value::Null)
    );
    assert_eq!(me_with_header(&d, &token).await["user"], Value::Null);
}

#[tokio::test]
async fn a_socket_logged_in_over_its_messages_closes_when_revoked_from_another_login() {
    // The demo's binary, as a client would reach it.
    let d = spawn_demo(&support::stores::sqlite_url()).await;
    let mut socket = open_ws_without_cookie(&d).await;
    next_json(&mut socket).await;
    // Logged in, out and in again: the socket follows each session.
    for op in ["login", "logout", "login"] {
        send_json(&mut socket, json!({ "op": op, "user": "finn" })).await;
        assert_eq!(next_json(&mut socket).await["type"], "token", "{op}");
        assert_eq!(next_json(&mut socket).await["type"], "state", "{op}");
    }
    let laptop = Browser::new(&d);
    laptop.login("finn").await;
    let conns = laptop.json("GET", "/api/connections").await;
    assert_eq!(conns.as_array().unwrap().len(), 1, "{conns}");
    revoke_other_and_expect_close(&laptop, &mut socket).await;
}
