//! The demo page in headless Chromium, driven over the DevTools protocol
//! as a newcomer would use it: each state the page can be in, seen in a
//! real browser, with a screenshot of each in `target/screenshots/`
//! (`SESSIONKIT_UPDATE_SCREENSHOTS=1` also refreshes the README's, in
//! `docs/screenshots/`).

#[allow(dead_code)]
#[path = "../examples/demo.rs"]
mod demo;
mod support;

use std::time::Duration;

use sessionkit::{MemoryStore, Regeneration, SessionStore};
use support::browser::{Chromium, Tab};

/// The demo served in this process on a free loopback port.
struct Server {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(store: impl SessionStore, regeneration: Option<Regeneration>) -> Server {
    let app = demo::app(store, regeneration).expect("the demo's layer builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = demo::serve(listener, app).await;
    });
    Server { url, task }
}

/// Logs in through the form and waits for the logged-in state.
async fn log_in(page: &Tab, name: &str) {
    page.fill("#name", name).await;
    page.click("#login").await;
    page.wait_for_text("#user-name", name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_visit_is_anonymous_with_an_idle_socket_then_logs_in_and_counts() {
    let server = serve(MemoryStore::new(), None).await;
    let page = Chromium::launch("first-visit").await;
    page.goto(&server.url).await;

    // Anonymous: the socket waits for a login, in a neutral colour, not red.
    page.wait_for_text("#ws", "idle (opens after you log in)")
        .await;
    assert_eq!(page.eval("$('ws').className").await, "idle");
    assert_eq!(page.text("#token-age").await, "no session yet");
    page.wait_for_text(
        "#next-rotation",
        "off (start the demo with SESSION_SFR_SECS",
    )
    .await;
    assert!(page.text("aside").await.contains("second browser"));
    page.click("#plus").await;
    page.wait_for_text("#counter", "1").await;
    page.wait_for(
        "$('token-age').textContent.endsWith(' s')",
        "the new session's token age",
    )
    .await;
    page.screenshot("anonymous").await;

    // A name that is too long is refused with the reason.
    page.fill("#name", &"x".repeat(40)).await;
    page.click("#login").await;
    page.wait_for_text("#login-error", "at most 32 characters")
        .await;

    log_in(&page, "alice").await;
    page.wait_for_text("#ws", "open").await;
    assert_eq!(page.eval("$('ws').className").await, "ok");
    assert_eq!(
        page.text("#counter").await,
        "1",
        "the counter survives login"
    );
    page.click("#plus").await;
    page.wait_for_text("#counter", "2").await;
    // The session list: this browser, readable, with its live socket.
    page.wait_for(
        "document.querySelector('tr.current')",
        "the current session's row",
    )
    .await;
    let row = page.text("tr.current").await;
    assert!(row.contains("Headless Chrome"), "{row}");
    assert!(row.contains("127.0.0.1"), "{row}");
    assert!(row.contains("this browser"), "{row}");
    page.wait_for(
        "document.querySelector('tr.current').cells[5].textContent === '1'",
        "one live socket on this session",
    )
    .await;
    page.screenshot("logged-in").await;

    // Logging out here is no news from elsewhere: no notice, socket idle.
    page.click("#logout").await;
    page.wait_for("!$('anonymous').hidden", "the login form")
        .await;
    page.wait_for_text("#ws", "idle").await;
    assert_eq!(page.eval("$('ended-banner').hidden").await, true);
    assert_eq!(page.text("#counter").await, "0");
    page.assert_no_script_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_from_a_second_browser_closes_the_first_pages_socket_and_logs_it_out() {
    let server = serve(MemoryStore::new(), None).await;
    let (first, second) = tokio::join!(Chromium::launch("first"), Chromium::launch("second"));
    first.goto(&server.url).await;
    log_in(&first, "alice").await;
    first.click("#plus").await;
    first.wait_for_text("#counter", "1").await;
    first.wait_for_text("#ws", "open").await;

    second.goto(&server.url).await;
    log_in(&second, "alice").await;
    second.wait_for_text("#ws", "open").await;
    // Both sessions, the other one's socket counted.
    second
        .wait_for(
            "document.querySelectorAll('#sessions tr[data-id]').length === 2 \
             && document.querySelector('tr:not(.current)[data-id]').cells[5].textContent === '1'",
            "both sessions, the first with its socket",
        )
        .await;
    second.screenshot("two-sessions").await;

    second.click("button.revoke").await;
    first.wait_for_text("#ws", "closed: session revoked").await;
    first
        .wait_for_text(
            "#ended-banner",
            "revoked from another device. Log in again.",
        )
        .await;
    first
        .wait_for(
            "!$('anonymous').hidden && $('logged-in').hidden",
            "the logged-out state",
        )
        .await;
    first.screenshot("revoked").await;
    second
        .wait_for(
            "document.querySelectorAll('#sessions tr[data-id]').length === 1",
            "the revoked session gone from the list",
        )
        .await;

    // +1 now counts for the anonymous visitor the page shows, from zero.
    first.click("#plus").await;
    first.wait_for_text("#counter", "1").await;
    // Logging in again works and hides the notice.
    log_in(&first, "alice").await;
    first
        .wait_for("$('ended-banner').hidden", "the notice to go")
        .await;
    first.wait_for_text("#ws", "open").await;
    first.assert_no_script_errors();
    second.assert_no_script_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_in_another_tab_logs_this_page_out_and_says_so() {
    let server = serve(MemoryStore::new(), None).await;
    let browser = Chromium::launch("tabs").await;
    browser.goto(&server.url).await;
    log_in(&browser, "alice").await;
    browser.wait_for_text("#ws", "open").await;
    // The same profile, so the same cookie: the same session.
    let other = browser.new_tab("tabs-other").await;
    other.goto(&server.url).await;
    other.wait_for_text("#user-name", "alice").await;

    other.click("#logout").await;
    other
        .wait_for("!$('anonymous').hidden", "the other tab's login form")
        .await;
    browser
        .wait_for_text("#ws", "closed: session logged out")
        .await;
    browser
        .wait_for_text(
            "#ended-banner",
            "logged out in another tab or window. Log in again.",
        )
        .await;
    browser
        .wait_for(
            "!$('anonymous').hidden && $('logged-in').hidden",
            "the logged-out state",
        )
        .await;
    browser.assert_no_script_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_short_regeneration_policy_the_page_stays_logged_in_across_rotations_and_reloads() {
    let policy = Regeneration::every(Duration::from_secs(2));
    let server = serve(MemoryStore::new(), Some(policy)).await;
    let page = Chromium::launch("rotation").await;
    page.goto(&server.url).await;
    page.wait_for_text("#next-rotation", "every 2 s").await;
    log_in(&page, "alice").await;
    page.wait_for_text("#next-rotation", "in ").await;

    let mut last = serde_json::Value::Null;
    for round in 0..2 {
        // The page makes the request that replaces a due token; the socket
        // reports it and "Last replaced" follows.
        let rotated = page
            .wait_for(
                &format!("me.rotated_at_ms && me.rotated_at_ms !== {last} && me.rotated_at_ms"),
                "the next rotation",
            )
            .await;
        page.wait_for_text("#ws", "told of the token replacement")
            .await;
        assert_ne!(page.text("#rotated").await, "never");
        if round == 0 {
            page.screenshot("rotated").await;
        }
        last = rotated;
        page.reload().await;
        page.wait_for_text("#user-name", "alice").await;
        page.wait_for_text("#ws", "open").await;
    }
    page.assert_no_script_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_unreachable_the_page_shows_a_banner_and_recovers() {
    let redis = support::redis::RedisServer::start();
    let store = sessionkit::RedisStore::connect(&redis.url()).await.unwrap();
    let server = serve(store, None).await;
    let page = Chromium::launch("store-down").await;
    page.goto(&server.url).await;
    log_in(&page, "alice").await;
    page.wait_for(
        "document.querySelector('tr.current')?.cells[5].textContent === '1'",
        "the session's socket in the list",
    )
    .await;

    // A hung store: calls time out (2 s) and the API answers 503.
    redis.stop();
    page.wait_for_text("#store-banner", "Session store unavailable")
        .await;
    assert_eq!(page.eval("$('store-banner').hidden").await, false);
    page.screenshot("store-unavailable").await;
    redis.cont();
    page.wait_for("$('store-banner').hidden", "the banner to go")
        .await;
    page.wait_for_text("#user-name", "alice").await;
    assert_eq!(page.eval("$('ended-banner').hidden").await, true);
    page.assert_no_script_errors();
}
