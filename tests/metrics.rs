//! The metrics through the real layer, read back from `metrics-util`'s
//! `DebuggingRecorder`. Each test installs its recorder for its own thread
//! only (`metrics::with_local_recorder` around a current-thread runtime), so
//! tests running in parallel in this binary never see each other's counts.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::routing;
use axum::Router;
use http::StatusCode;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sessionkit::metrics::*;
use sessionkit::store::*;
use sessionkit::{
    Clock, LiveSession, ManualClock, MemoryStore, Regeneration, Session, SessionId, SessionLayer,
    StaleTokenPolicy,
};
use support::*;
use tokio::sync::{broadcast, Barrier};

/// A series: its name and its sorted labels.
type Series = (String, Vec<(String, String)>);

/// What a recorder saw: counters and gauges summed over snapshots (a
/// snapshot drains the recorder), histogram samples collected.
#[derive(Default)]
struct Seen {
    values: HashMap<Series, f64>,
    samples: HashMap<Series, Vec<f64>>,
    described: Vec<String>,
}

impl Seen {
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, _, description, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let id = (key.name().to_owned(), labels);
            if description.is_some() {
                self.described.push(id.0.clone());
            }
            match value {
                DebugValue::Counter(n) => *self.values.entry(id).or_default() += n as f64,
                DebugValue::Gauge(g) => *self.values.entry(id).or_default() += g.into_inner(),
                DebugValue::Histogram(xs) => self
                    .samples
                    .entry(id)
                    .or_default()
                    .extend(xs.into_iter().map(|x| x.into_inner())),
            }
        }
    }

    /// A counter's or gauge's value (0 when never recorded).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.values
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(name, labels) as u64
    }

    /// A histogram's samples for `operation`.
    fn durations(&self, operation: &str) -> &[f64] {
        self.samples
            .get(&(
                STORE_CALL_DURATION.to_owned(),
                vec![("operation".to_owned(), operation.to_owned())],
            ))
            .map_or(&[], Vec::as_slice)
    }
}

/// Runs `scenario` on a current-thread runtime with a recorder of its own,
/// handing it a probe that reads what was recorded so far.
fn recorded<F, Fut>(scenario: F)
where
    F: FnOnce(Probe) -> Fut,
    Fut: Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let probe = Probe {
        snapshotter: recorder.snapshotter(),
        seen: Arc::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(scenario(probe)));
}

#[derive(Clone)]
struct Probe {
    snapshotter: Snapshotter,
    seen: Arc<Mutex<Seen>>,
}

impl Probe {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        let mut seen = self.seen.lock().unwrap();
        seen.take(&self.snapshotter);
        seen
    }
}

/// Open connections, kept by the app between requests.
type Held = Arc<Mutex<Vec<LiveSession>>>;

fn app(held: Held) -> Router {
    Router::new()
        .route(
            "/write",
            routing::post(|s: Session| async move {
                let n: u64 = s.get("cart")?.unwrap_or(0);
                s.insert("cart", n + 1)?;
                Ok::<_, sessionkit::Error>("ok")
            }),
        )
        .route(
            "/read",
            routing::get(|s: Session| async move {
                Ok::<_, sessionkit::Error>(format!("{:?}", s.get::<u64>("cart")?))
            }),
        )
        .route(
            "/login",
            routing::post(|s: Session| async move {
                s.login(&user(1, "ada")).await?;
                Ok::<_, sessionkit::Error>("ok")
            }),
        )
        .route(
            "/logout",
            routing::post(|s: Session| async move {
                s.logout().await?;
                Ok::<_, sessionkit::Error>("bye")
            }),
        )
        .route(
            "/everywhere",
            routing::post(|s: Session| async move {
                Ok::<_, sessionkit::Error>(s.logout_everywhere().await?.to_string())
            }),
        )
        .route(
            "/connect",
            routing::post(move |s: Session| async move {
                let live = s.connect().await?;
                held.lock().unwrap().push(live);
                Ok::<_, sessionkit::Error>("connected")
            }),
        )
}

fn with_layer(layer: SessionLayer) -> Router {
    app(Held::default()).layer(layer)
}

#[test]
fn sessions_are_counted_when_created_and_logged_in_and_ended_by_reason() {
    recorded(|probe| async move {
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(clock.clone());
        let layer = SessionLayer::builder(store.clone())
            .clock(clock.clone())
            .max_sessions_per_user(2)
            .build();
        let app = with_layer(layer);

        let anonymous = send(&app, post("/write", None)).await.cookie().unwrap();
        assert_eq!(probe.seen().count(SESSIONS_CREATED, &[]), 1);

        // Logging in ends the anonymous session and starts another.
        let token = send(&app, post("/login", Some(&anonymous)))
            .await
            .cookie()
            .unwrap();
        {
            let seen = probe.seen();
            assert_eq!(seen.count(LOGINS, &[]), 1);
            assert_eq!(seen.count(SESSIONS_CREATED, &[]), 2);
            assert_eq!(seen.count(SESSIONS_ENDED, &[("reason", "replaced")]), 1);
        }

        send(&app, post("/logout", Some(&token))).await;
        assert_eq!(
            probe.seen().count(SESSIONS_ENDED, &[("reason", "logout")]),
            1
        );

        // Three devices, two allowed: the oldest goes.
        let mut devices = Vec::new();
        for _ in 0..3 {
            clock.advance(Duration::from_secs(1));
            devices.push(send(&app, post("/login", None)).await.cookie().unwrap());
        }
        assert_eq!(
            probe.seen().count(SESSIONS_ENDED, &[("reason", "limit")]),
            1
        );

        let res = send(&app, post("/everywhere", Some(&devices[2]))).await;
        assert_eq!(res.body, "2");
        assert_eq!(
            probe.seen().count(SESSIONS_ENDED, &[("reason", "revoke")]),
            2
        );

        send(&app, post("/write", None)).await;
        clock.advance(Duration::from_secs(31 * 60));
        store.purge_expired();
        let seen = probe.seen();
        assert_eq!(seen.count(SESSIONS_ENDED, &[("reason", "expiry")]), 1);
        assert_eq!(seen.count(LOGINS, &[]), 4);
        assert_eq!(seen.count(SESSIONS_CREATED, &[]), 6);
    });
}

#[test]
fn expired_sessions_a_sqlite_purge_deletes_count_as_expiry() {
    recorded(|probe| async move {
        let clock = ManualClock::new();
        let store = support::stores::sqlite_store(&support::stores::sqlite_url()).await;
        let layer = SessionLayer::builder(store.clone())
            .clock(clock.clone())
            .build();
        let app = with_layer(layer);
        for _ in 0..2 {
            send(&app, post("/write", None)).await;
        }
        clock.advance(Duration::from_secs(31 * 60));
        assert_eq!(store.purge_expired(clock.now()).await.unwrap(), 2);
        assert_eq!(
            probe.seen().count(SESSIONS_ENDED, &[("reason", "expiry")]),
            2
        );
    });
}

#[test]
fn anonymous_sessions_a_full_memory_store_evicts_count_as_evicted() {
    recorded(|probe| async move {
        // One session per shard: most creations must evict one.
        let store = MemoryStore::builder().max_sessions(16).build();
        let app = with_layer(SessionLayer::builder(store.clone()).build());
        for _ in 0..40 {
            assert_eq!(
                send(&app, post("/write", None)).await.status,
                StatusCode::OK
            );
        }
        let seen = probe.seen();
        assert_eq!(seen.count(SESSIONS_CREATED, &[]), 40);
        let evicted = seen.count(SESSIONS_ENDED, &[("reason", "evicted")]);
        assert!(evicted >= 24, "40 sessions in 16 places: {evicted}");
        assert_eq!(evicted as usize, 40 - store.len());
        assert_eq!(seen.count(SESSIONS_ENDED, &[("reason", "expiry")]), 0);
    });
}

#[test]
fn a_request_that_only_reads_creates_and_ends_nothing() {
    recorded(|probe| async move {
        let app = with_layer(SessionLayer::builder(MemoryStore::new()).build());
        let res = send(&app, get("/read", None)).await;
        assert_eq!(res.status, StatusCode::OK);
        let seen = probe.seen();
        assert_eq!(seen.count(SESSIONS_CREATED, &[]), 0);
        assert!(seen.values.keys().all(|(name, _)| name != SESSIONS_ENDED));
        // No token: nothing to load, so no store call either.
        assert!(seen.samples.is_empty());
    });
}

fn regeneration() -> Regeneration {
    Regeneration::every(Duration::from_secs(60))
        .grace(Duration::from_secs(20))
        .resend_for(Duration::from_secs(5))
}

#[test]
fn rotations_are_counted_as_installed_and_lapsed() {
    recorded(|probe| async move {
        let clock = ManualClock::new();
        let layer = SessionLayer::builder(MemoryStore::with_clock(clock.clone()))
            .clock(clock.clone())
            .regeneration(regeneration())
            .build();
        let app = with_layer(layer);
        let first = send(&app, post("/write", None)).await.cookie().unwrap();

        clock.advance(Duration::from_secs(61));
        let second = send(&app, get("/read", Some(&first))).await.cookie();
        assert!(second.is_some(), "the due token was replaced");
        assert_eq!(
            probe.seen().count(ROTATIONS, &[("outcome", "installed")]),
            1
        );

        // The client never adopted the replacement and comes back with the
        // old token after CIJS (still inside OJS): a fresh one is installed.
        clock.advance(Duration::from_secs(6));
        let third = send(&app, get("/read", Some(&first))).await.cookie();
        assert!(third.is_some() && third != second);
        let seen = probe.seen();
        assert_eq!(seen.count(ROTATIONS, &[("outcome", "installed")]), 2);
        assert_eq!(seen.count(ROTATIONS, &[("outcome", "lapsed")]), 1);
        assert_eq!(seen.count(ROTATIONS, &[("outcome", "joined")]), 0);
    });
}

#[test]
fn a_request_that_loses_the_rotation_race_counts_as_joined() {
    recorded(|probe| async move {
        let clock = ManualClock::new();
        let store = Gated::new(MemoryStore::with_clock(clock.clone()));
        let layer = SessionLayer::builder(store.clone())
            .clock(clock.clone())
            .regeneration(regeneration())
            .build();
        let app = with_layer(layer);
        let token = send(&app, post("/write", None)).await.cookie().unwrap();

        clock.advance(Duration::from_secs(61));
        // Both requests load the due token before either rotates it.
        store.gate_loads(2);
        let (a, b) = tokio::join!(
            send(&app, get("/read", Some(&token))),
            send(&app, get("/read", Some(&token)))
        );
        assert_eq!(a.cookie(), b.cookie(), "single flight: one replacement");
        let seen = probe.seen();
        assert_eq!(seen.count(ROTATIONS, &[("outcome", "installed")]), 1);
        assert_eq!(seen.count(ROTATIONS, &[("outcome", "joined")]), 1);
    });
}

#[test]
fn a_stale_token_revoked_by_policy_counts_as_an_end() {
    recorded(|probe| async move {
        let clock = ManualClock::new();
        let layer = SessionLayer::builder(MemoryStore::with_clock(clock.clone()))
            .clock(clock.clone())
            .regeneration(regeneration())
            .on_stale_token(StaleTokenPolicy::Revoke)
            .build();
        let app = with_layer(layer);
        let old = send(&app, post("/write", None)).await.cookie().unwrap();
        clock.advance(Duration::from_secs(61));
        let new = send(&app, get("/read", Some(&old))).await.cookie().unwrap();
        send(&app, get("/read", Some(&new))).await;
        clock.advance(Duration::from_secs(21));
        send(&app, get("/read", Some(&old))).await;
        assert_eq!(
            probe
                .seen()
                .count(SESSIONS_ENDED, &[("reason", "stale_token")]),
            1
        );
    });
}

#[test]
fn every_store_call_is_timed_by_operation() {
    recorded(|probe| async move {
        let app = with_layer(SessionLayer::builder(MemoryStore::new()).build());
        let token = send(&app, post("/write", None)).await.cookie().unwrap();
        let token = send(&app, post("/login", Some(&token)))
            .await
            .cookie()
            .unwrap();
        send(&app, post("/write", Some(&token))).await;
        send(&app, post("/logout", Some(&token))).await;
        let seen = probe.seen();
        assert_eq!(seen.durations("create").len(), 1);
        assert_eq!(seen.durations("login").len(), 1);
        assert_eq!(seen.durations("load").len(), 3);
        assert_eq!(seen.durations("save").len(), 1);
        assert_eq!(seen.durations("destroy").len(), 1);
        assert!(seen
            .samples
            .values()
            .flatten()
            .all(|s| (0.0..2.0).contains(s)));
        assert!(seen.values.keys().all(|(name, _)| name != STORE_ERRORS));
    });
}

#[test]
fn failed_store_calls_are_counted_by_operation_and_kind() {
    recorded(|probe| async move {
        let token = made_up_token('A');
        let down = with_layer(SessionLayer::builder(Broken::Down).build());
        let res = send(&down, get("/read", Some(&token))).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
        let res = send(&down, post("/write", None)).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);

        let hung = with_layer(
            SessionLayer::builder(Broken::Hung)
                .store_timeout(Duration::from_millis(50))
                .build(),
        );
        let res = send(&hung, get("/read", Some(&token))).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);

        let seen = probe.seen();
        let errors =
            |operation, kind| seen.count(STORE_ERRORS, &[("operation", operation), ("kind", kind)]);
        assert_eq!(errors("load", "backend"), 1);
        assert_eq!(errors("create", "backend"), 1);
        assert_eq!(errors("load", "timeout"), 1);
        // Failed calls are timed too; the timed-out one took the timeout.
        assert_eq!(seen.durations("load").len(), 2);
        assert!(seen.durations("load").iter().any(|s| *s >= 0.05));
    });
}

#[test]
fn the_connections_gauge_follows_connections_opening_and_closing() {
    recorded(|probe| async move {
        let layer = SessionLayer::builder(MemoryStore::new()).build();
        let held = Held::default();
        let app = app(held.clone()).layer(layer);
        let token = send(&app, post("/login", None)).await.cookie().unwrap();
        for _ in 0..2 {
            let res = send(&app, post("/connect", Some(&token))).await;
            assert_eq!(res.status, StatusCode::OK);
        }
        assert_eq!(probe.seen().value(CONNECTIONS, &[]), 2.0);

        let first = held.lock().unwrap().remove(0);
        first.close().await;
        assert_eq!(probe.seen().value(CONNECTIONS, &[]), 1.0);
        let second = held.lock().unwrap().remove(0);
        drop(second);
        assert_eq!(probe.seen().value(CONNECTIONS, &[]), 0.0);
    });
}

#[test]
fn describe_gives_every_series_its_help_text() {
    recorded(|probe| async move {
        sessionkit::metrics::describe();
        let app = with_layer(SessionLayer::builder(MemoryStore::new()).build());
        send(&app, post("/login", None)).await;
        let seen = probe.seen();
        for name in [LOGINS, SESSIONS_CREATED, STORE_CALL_DURATION] {
            assert!(seen.described.iter().any(|d| d == name), "{name}");
        }
    });
}

/// Forwards to a memory store; while armed, each load waits until `n`
/// loads are waiting, so that the requests making them race afterwards.
#[derive(Clone)]
struct Gated {
    inner: MemoryStore,
    barrier: Arc<Mutex<Option<Arc<Barrier>>>>,
}

impl Gated {
    fn new(inner: MemoryStore) -> Self {
        Gated {
            inner,
            barrier: Arc::default(),
        }
    }

    fn gate_loads(&self, n: usize) {
        *self.barrier.lock().unwrap() = Some(Arc::new(Barrier::new(n)));
    }
}

#[async_trait]
impl SessionStore for Gated {
    async fn load(&self, req: &Load) -> Result<Lookup> {
        let lookup = self.inner.load(req).await;
        let barrier = self.barrier.lock().unwrap().clone();
        if let Some(barrier) = barrier {
            barrier.wait().await;
        }
        lookup
    }
    async fn create(&self, new: &NewSession) -> Result<()> {
        self.inner.create(new).await
    }
    async fn save(&self, req: &Save) -> Result<bool> {
        self.inner.save(req).await
    }
    async fn rotate(&self, r: &Rotation) -> Result<Rotated> {
        self.inner.rotate(r).await
    }
    async fn regenerate(&self, req: &Regenerate) -> Result<bool> {
        self.inner.regenerate(req).await
    }
    async fn login(&self, login: &Login) -> Result<LoginOutcome> {
        self.inner.login(login).await
    }
    async fn destroy(&self, req: &Destroy) -> Result<bool> {
        self.inner.destroy(req).await
    }
    async fn list_sessions(&self, req: &ListSessions) -> Result<Vec<SessionInfo>> {
        self.inner.list_sessions(req).await
    }
    async fn revoke(&self, req: &RevokeSessions) -> Result<Vec<SessionId>> {
        self.inner.revoke(req).await
    }
    async fn sync_user(&self, req: &SyncUser) -> Result<usize> {
        self.inner.sync_user(req).await
    }
    async fn connect(&self, req: &Connect) -> Result<bool> {
        self.inner.connect(req).await
    }
    async fn fetch(&self, f: &Fetch) -> Result<Option<Fetched>> {
        self.inner.fetch(f).await
    }
    async fn disconnect(&self, req: &Disconnect) -> Result<()> {
        self.inner.disconnect(req).await
    }
    async fn list_connections(&self, req: &ListConnections) -> Result<Vec<Connection>> {
        self.inner.list_connections(req).await
    }
    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        self.inner.subscribe()
    }
}
