//! A headless Chromium driven over the DevTools protocol (CDP), for tests
//! of the demo page in a real browser.
//!
//! Each [`Chromium`] is one browser process with its own profile (cookie
//! jar) and one tab. The client is the few CDP commands the tests need
//! (`Page.navigate`, `Runtime.evaluate`, `Page.captureScreenshot`) over the
//! browser's WebSocket, so no browser-automation crate is needed. Every
//! wait is bounded; the browser is killed on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>>;

/// How long a DOM condition may take to hold.
pub const WAIT: Duration = Duration::from_secs(8);

/// One headless Chromium with a fresh profile (its own cookie jar): a
/// browser process, its DevTools connection and its first tab, which the
/// browser dereferences to. [`new_tab`](Self::new_tab) opens more tabs in
/// the same profile.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    reader: tokio::task::JoinHandle<()>,
    tab: Tab,
}

/// One tab, attached over the browser's connection (a CDP session).
pub struct Tab {
    name: String,
    cdp: Arc<Cdp>,
    /// The CDP session id; commands to the browser itself go without.
    session: Option<String>,
}

/// The DevTools connection: commands out, their answers matched by id.
struct Cdp {
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    pending: Pending,
    next_id: AtomicU64,
    /// Console messages and uncaught exceptions of every tab, for failures.
    console: Arc<Mutex<Vec<String>>>,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl std::ops::Deref for Chromium {
    type Target = Tab;
    fn deref(&self) -> &Tab {
        &self.tab
    }
}

/// The browser binary: `$CHROMIUM`, or Debian's `chromium`.
fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

impl Chromium {
    /// Starts a browser named `name` (in failure messages and screenshot
    /// names) with an empty profile, and attaches to its tab.
    pub async fn launch(name: &str) -> Chromium {
        // Browsers start one at a time: a first start on a fresh machine
        // builds caches (fonts, the profile) and several at once on two
        // cores can take longer than any sensible bound each.
        static LAUNCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = LAUNCH.lock().await;
        let (child, profile, url) = match start(name) {
            Ok(started) => started,
            // One retry: a start that stalls once (a cold cache, a busy
            // machine) is not what the browser tests are about.
            Err(first) => start(name).unwrap_or_else(|second| {
                panic!("{name}: Chromium did not start.\nfirst try: {first}\nsecond try: {second}")
            }),
        };
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .unwrap_or_else(|e| panic!("{name}: cannot connect to {url}: {e}"));
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let console: Arc<Mutex<Vec<String>>> = Arc::default();
        let reader = tokio::spawn({
            let pending = pending.clone();
            let console = console.clone();
            async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(msg) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if let Some(id) = msg["id"].as_u64() {
                        let reply = match msg.get("error") {
                            Some(error) => Err(error.clone()),
                            None => Ok(msg["result"].clone()),
                        };
                        if let Some(tx) = pending.lock().unwrap().remove(&id) {
                            let _ = tx.send(reply);
                        }
                    } else if let Some(line) = console_line(&msg) {
                        console.lock().unwrap().push(line);
                    }
                }
            }
        });
        let cdp = Arc::new(Cdp {
            sink: tokio::sync::Mutex::new(sink),
            pending,
            next_id: AtomicU64::new(1),
            console,
        });
        let browser = Tab {
            name: name.to_owned(),
            cdp,
            session: None,
        };
        let targets = browser.command("Target.getTargets", json!({})).await;
        let target = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].clone())
            .unwrap_or_else(|| panic!("{name}: no tab in {targets}"));
        let tab = browser.attach(target, name).await;
        Chromium {
            child,
            profile,
            reader,
            tab,
        }
    }

    /// Opens another tab in this browser (same profile, same cookies).
    pub async fn new_tab(&self, name: &str) -> Tab {
        let browser = Tab {
            name: name.to_owned(),
            cdp: self.tab.cdp.clone(),
            session: None,
        };
        let created = browser
            .command("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        browser.attach(created["targetId"].clone(), name).await
    }
}

impl Tab {
    /// Attaches to the tab `target` (from the browser-level handle).
    async fn attach(&self, target: Value, name: &str) -> Tab {
        let attached = self
            .command(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        let tab = Tab {
            name: name.to_owned(),
            cdp: self.cdp.clone(),
            session: attached["sessionId"].as_str().map(str::to_owned),
        };
        tab.command("Page.enable", json!({})).await;
        tab.command("Runtime.enable", json!({})).await;
        tab
    }

    /// Sends one CDP command to this tab (or to the browser, for the
    /// browser-level handle) and waits for its answer.
    pub async fn command(&self, method: &str, params: Value) -> Value {
        let cdp = &self.cdp;
        let id = cdp.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            msg["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        cdp.pending.lock().unwrap().insert(id, tx);
        cdp.sink
            .lock()
            .await
            .send(Message::text(msg.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{}: {method}: {e}", self.name));
        match tokio::time::timeout(Duration::from_secs(15), rx).await {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(error))) => panic!("{}: {method} failed: {error}", self.name),
            _ => panic!("{}: no answer to {method}", self.name),
        }
    }

    /// Loads `url` and waits until the document has loaded.
    pub async fn goto(&self, url: &str) {
        self.command("Page.navigate", json!({ "url": url })).await;
        self.wait_for("document.readyState === 'complete'", "the page to load")
            .await;
    }

    /// Reloads the page and waits until it has loaded.
    pub async fn reload(&self) {
        // A marker the old document has and the new one lacks.
        self.eval("window.__before_reload = true").await;
        self.command("Page.reload", json!({})).await;
        self.wait_for(
            "!window.__before_reload && document.readyState === 'complete'",
            "the page to reload",
        )
        .await;
    }

    /// The value of a JavaScript expression (promises awaited).
    pub async fn eval(&self, expression: &str) -> Value {
        match self.try_eval(expression).await {
            Ok(v) => v,
            Err(e) => panic!("{}: `{expression}` threw {e}{}", self.name, self.log()),
        }
    }

    async fn try_eval(&self, expression: &str) -> Result<Value, String> {
        let reply = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        match reply.get("exceptionDetails") {
            Some(details) => Err(details["exception"]["description"]
                .as_str()
                .unwrap_or("an exception")
                .to_owned()),
            None => Ok(reply["result"]["value"].clone()),
        }
    }

    /// Polls `expression` until it is truthy, for at most [`WAIT`]; returns
    /// its value. `what` says what was awaited if it never holds.
    pub async fn wait_for(&self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.try_eval(expression).await;
            match &value {
                Ok(v) if truthy(v) => return v.clone(),
                _ if Instant::now() >= deadline => panic!(
                    "{}: waited {WAIT:?} for {what} (`{expression}` was {value:?}){}",
                    self.name,
                    self.log()
                ),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Waits until the element `selector` exists and its text contains
    /// `text`.
    pub async fn wait_for_text(&self, selector: &str, text: &str) {
        let expression = format!(
            "(document.querySelector({sel}) || {{}}).textContent?.includes({text})",
            sel = json!(selector),
            text = json!(text),
        );
        self.wait_for(&expression, &format!("{selector} to show {text:?}"))
            .await;
    }

    /// The text of the element `selector` ("" when there is none).
    pub async fn text(&self, selector: &str) -> String {
        let expression = format!(
            "(document.querySelector({}) || {{}}).textContent || ''",
            json!(selector)
        );
        self.eval(&expression)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Clicks the element `selector`, which must exist.
    pub async fn click(&self, selector: &str) {
        let sel = json!(selector);
        self.wait_for(
            &format!("document.querySelector({sel})"),
            &format!("{selector} to exist"),
        )
        .await;
        self.eval(&format!("document.querySelector({sel}).click()"))
            .await;
    }

    /// Types `value` into the input `selector`, as a user would.
    pub async fn fill(&self, selector: &str, value: &str) {
        let expression = format!(
            "(() => {{ const el = document.querySelector({}); el.value = {}; \
             el.dispatchEvent(new Event('input', {{ bubbles: true }})); }})()",
            json!(selector),
            json!(value)
        );
        self.eval(&expression).await;
    }

    /// Saves a PNG of the tab as `target/screenshots/NAME.png`, and as
    /// `docs/screenshots/NAME.png` too when `SESSIONKIT_UPDATE_SCREENSHOTS`
    /// is set (the README's pictures).
    pub async fn screenshot(&self, name: &str) {
        // Cut below the content, so the pictures have no empty half.
        let height = self
            .eval("Math.ceil(document.body.getBoundingClientRect().bottom + 24)")
            .await;
        let width = self.eval("window.innerWidth").await;
        let clip = json!({ "x": 0, "y": 0, "width": width, "height": height, "scale": 1 });
        let shot = self
            .command(
                "Page.captureScreenshot",
                json!({ "format": "png", "clip": clip }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        let mut dirs = vec![screenshots_dir()];
        if std::env::var_os("SESSIONKIT_UPDATE_SCREENSHOTS").is_some() {
            dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots"));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }

    /// Panics if a script of any tab of this browser threw an uncaught
    /// exception (or left a promise rejection unhandled).
    pub fn assert_no_script_errors(&self) {
        let console = self.cdp.console.lock().unwrap();
        let errors: Vec<_> = console
            .iter()
            .filter(|l| l.starts_with("uncaught:"))
            .collect();
        assert!(
            errors.is_empty(),
            "{}: script errors: {errors:?}",
            self.name
        );
    }

    fn log(&self) -> String {
        let console = self.cdp.console.lock().unwrap();
        if console.is_empty() {
            String::new()
        } else {
            format!("\npage console:\n  {}", console.join("\n  "))
        }
    }
}

/// `target/screenshots`, next to the test binaries (target/<profile>/deps).
fn screenshots_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/screenshots"))
}

/// Starts one browser process with a fresh profile and waits (bounded) for
/// it to say where its DevTools endpoint is. On failure the process is
/// killed, its profile removed, and the error carries what it printed.
fn start(name: &str) -> Result<(Child, PathBuf, String), String> {
    let profile = std::env::temp_dir().join(format!(
        "sessionkit-chromium-{}-{name}-{:x}",
        std::process::id(),
        super::postgres::random_u64()
    ));
    let mut child = Command::new(binary())
        .args([
            "--headless=new",
            // As root in a container Chromium refuses to start with its
            // sandbox; the tests only load their own loopback pages.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--window-size=1000,1100",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{}`: {e}; install Chromium (`apt-get install chromium`, \
                 which scripts/test.sh does) or set CHROMIUM",
                binary()
            )
        });
    match devtools_url(&mut child) {
        Ok(url) => Ok((child, profile, url)),
        Err(printed) => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&profile);
            Err(format!(
                "no DevTools URL within {STARTUP:?} (process {status}); it printed:\n{printed}"
            ))
        }
    }
}

/// How long one browser start may take before it is retried.
const STARTUP: Duration = Duration::from_secs(45);

/// Reads Chromium's stderr until it says where its DevTools endpoint is;
/// keeps draining it afterwards so the browser never blocks on the pipe.
/// On a timeout, gives back the last lines it printed.
fn devtools_url(child: &mut Child) -> Result<String, String> {
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let printed: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn({
        let printed = printed.clone();
        move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                } else if tx.is_some() {
                    let mut printed = printed.lock().unwrap();
                    if printed.len() == 40 {
                        printed.remove(0);
                    }
                    printed.push(line);
                }
            }
        }
    });
    rx.recv_timeout(STARTUP)
        .map_err(|_| printed.lock().unwrap().join("\n"))
}

fn console_line(msg: &Value) -> Option<String> {
    let params = &msg["params"];
    match msg["method"].as_str()? {
        "Runtime.consoleAPICalled" => Some(format!(
            "console.{}: {}",
            params["type"].as_str().unwrap_or("log"),
            params["args"]
                .as_array()
                .map(|args| {
                    args.iter()
                        .map(|a| a["value"].to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        )),
        "Runtime.exceptionThrown" => Some(format!(
            "uncaught: {}",
            params["exceptionDetails"]["exception"]["description"]
                .as_str()
                .unwrap_or("an exception")
        )),
        _ => None,
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}
