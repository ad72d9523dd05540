//! State shared by the layer, every request's session and the manager.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::clock::Millis;
use crate::config::Config;
use crate::error::Error;
use crate::hub::Hub;
use crate::metrics;
use crate::store::{with_call_deadline, SessionStore, StoreError};

/// The store and configuration behind one layer.
pub(crate) struct Shared {
    pub store: Arc<dyn SessionStore>,
    pub config: Config,
    /// Routes session-ended events to this node's connections; started with
    /// the first connection.
    pub hub: OnceLock<Arc<Hub>>,
}

impl Shared {
    pub fn new(store: Arc<dyn SessionStore>, config: Config) -> Self {
        Shared {
            store,
            config,
            hub: OnceLock::new(),
        }
    }
}

impl Shared {
    pub fn now(&self) -> Millis {
        self.config.clock.now()
    }

    /// Runs a store call under the configured timeout, so a hung store turns
    /// into an error instead of a hung request. A store that honours the
    /// caller's deadline is given it (see [`crate::store::call_deadline`])
    /// instead of a second timer.
    pub async fn call<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.store_timeout;
        let result = if self.store.honors_call_deadline() {
            with_call_deadline(deadline, fut).await
        } else {
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::timeout()),
            }
        };
        metrics::store_call(what, started, &result);
        result.map_err(|err| {
            tracing::error!(operation = what, error = %err, "session store call failed");
            Error::Store(err)
        })
    }
}
