//! A store wrapper whose saves can be held at the store or made to fail,
//! to see what the layer keeps when a write races or fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sessionkit::store::*;
use sessionkit::SessionId;
use tokio::sync::{broadcast, Notify};

/// Forwards every call to `inner`, except that saves may be held until
/// [`release`](Self::release) or fail while [`fail_saves`](Self::fail_saves)
/// is set.
#[derive(Clone)]
pub struct Faulty {
    inner: Arc<dyn SessionStore>,
    hold: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
    entered: Arc<Notify>,
    released: Arc<Notify>,
}

impl Faulty {
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Faulty {
            inner,
            hold: Arc::default(),
            fail: Arc::default(),
            entered: Arc::default(),
            released: Arc::default(),
        }
    }

    /// The next save waits at the store until [`release`](Self::release).
    pub fn hold_next_save(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Waits until a held save reached the store.
    pub async fn save_held(&self) {
        self.entered.notified().await;
    }

    pub fn release(&self) {
        self.released.notify_one();
    }

    /// Saves fail (as a backend failure) while `on`.
    pub fn fail_saves(&self, on: bool) {
        self.fail.store(on, Ordering::SeqCst);
    }
}

#[async_trait]
impl SessionStore for Faulty {
    async fn load(&self, req: &Load) -> Result<Lookup> {
        self.inner.load(req).await
    }
    async fn create(&self, new: &NewSession) -> Result<()> {
        self.inner.create(new).await
    }
    async fn save(&self, req: &Save) -> Result<bool> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::backend("connection refused"));
        }
        if self.hold.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.released.notified().await;
        }
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
