//! The session-ended feed and token rotations, routed to this node's live
//! connections.
//!
//! One [`Hub`] per layer, started with its first connection: it listens to
//! the store's [`subscribe`](crate::SessionStore::subscribe) feed and tells
//! each [`LiveSession`](crate::LiveSession) of an ended session at once; a
//! rotation made by a request on this node is handed to that session's
//! connections the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{broadcast, watch, Notify};

use crate::shared::Shared;
use crate::store::{EndReason, SessionEnded};
use crate::token::{SessionId, Token};

/// Routes the store's session-ended feed, and this node's rotations, to this
/// node's live connections.
#[derive(Default)]
pub(crate) struct Hub {
    watchers: Mutex<HashMap<SessionId, HashMap<String, Watcher>>>,
    /// Set by [`Hub::shut_down`]: connections opened later end at once.
    closing: AtomicBool,
    /// Signalled each time a connection leaves.
    left: Notify,
}

/// What a live connection listens on.
#[derive(Clone)]
pub(crate) struct Watcher {
    pub ended: watch::Sender<Option<EndReason>>,
    /// The token the connection's client should hold.
    pub token: watch::Sender<Option<Token>>,
    /// Asks the connection to check its session now (after a lagged feed).
    pub recheck: Arc<Notify>,
}

impl Hub {
    pub(crate) fn start(shared: &Shared) -> Arc<Hub> {
        let hub = Arc::new(Hub::default());
        tokio::spawn(route_events(shared.store.subscribe(), Arc::downgrade(&hub)));
        hub
    }

    fn watchers(&self) -> MutexGuard<'_, HashMap<SessionId, HashMap<String, Watcher>>> {
        self.watchers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn add(&self, id: &SessionId, connection: &str, watcher: Watcher) {
        if self.closing.load(Ordering::SeqCst) {
            watcher.ended.send_replace(Some(EndReason::Shutdown));
        }
        self.watchers()
            .entry(id.clone())
            .or_default()
            .insert(connection.to_owned(), watcher);
    }

    pub(crate) fn remove(&self, id: &SessionId, connection: &str) {
        self.take(id, connection);
    }

    /// Removes a connection's watcher of session `id` and hands it back.
    pub(crate) fn take(&self, id: &SessionId, connection: &str) -> Option<Watcher> {
        let mut watchers = self.watchers();
        let mut taken = None;
        if let Some(conns) = watchers.get_mut(id) {
            taken = conns.remove(connection);
            if conns.is_empty() {
                watchers.remove(id);
            }
        }
        drop(watchers);
        self.left.notify_waiters();
        taken
    }

    /// Ends every connection of this node with [`EndReason::Shutdown`], and
    /// any opened from now on. Returns how many there were.
    pub(crate) fn shut_down(&self) -> usize {
        self.closing.store(true, Ordering::SeqCst);
        let watchers = self.watchers();
        for watcher in watchers.values().flat_map(HashMap::values) {
            watcher.ended.send_replace(Some(EndReason::Shutdown));
        }
        watchers.values().map(HashMap::len).sum()
    }

    /// Waits until every connection has left (closed or dropped).
    pub(crate) async fn drained(&self) {
        loop {
            // Registered before checking, so a leave in between is not missed.
            let left = self.left.notified();
            if self.watchers().is_empty() {
                return;
            }
            left.await;
        }
    }

    /// A request on this node gave session `id` a new token: its
    /// connections here follow at once.
    pub(crate) fn rotated(&self, id: &SessionId, token: &Token) {
        if let Some(conns) = self.watchers().get(id) {
            for watcher in conns.values() {
                watcher.token.send_if_modified(|known| {
                    let changed = known.as_ref() != Some(token);
                    *known = Some(token.clone());
                    changed
                });
            }
        }
    }
}

async fn route_events(mut feed: broadcast::Receiver<SessionEnded>, hub: Weak<Hub>) {
    loop {
        let event = feed.recv().await;
        let Some(hub) = hub.upgrade() else { return };
        match event {
            Ok(SessionEnded { id, reason }) => {
                let conns = hub.watchers().get(&id).cloned().unwrap_or_default();
                for watcher in conns.values() {
                    watcher.ended.send_replace(Some(reason));
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Some events were lost: any session may have ended, so every
                // connection checks its own now instead of at its next beat.
                tracing::warn!(missed, "session-ended feed lagged; rechecking connections");
                let all: Vec<Watcher> = hub
                    .watchers()
                    .values()
                    .flat_map(|c| c.values().cloned())
                    .collect();
                for watcher in all {
                    watcher.recheck.notify_one();
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
