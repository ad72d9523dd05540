//! The session-ended feed across processes: scripts `PUBLISH` an event
//! whenever they end a session, and every store listens on a dedicated
//! pub/sub connection and forwards what it hears to its local subscribers.
//!
//! A lost pub/sub connection is re-established with a growing pause. Events
//! published while it was down are not replayed: connections notice an
//! ended session at their next heartbeat instead.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubStream;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::store::{Result, SessionEnded, StoreError};

const PAUSE_MIN: Duration = Duration::from_millis(50);
const PAUSE_MAX: Duration = Duration::from_secs(2);

/// Opens a pub/sub connection subscribed to `channel` on the first of
/// `sources` that answers within `timeout`.
pub(super) async fn subscribe(
    sources: &[redis::Client],
    channel: &str,
    timeout: Duration,
) -> Result<PubSubStream> {
    let mut last = StoreError::backend("no Redis server to subscribe to");
    for client in sources {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => last = StoreError::backend(err),
            Err(_) => last = StoreError::timeout(),
        }
    }
    Err(last)
}

/// Forwards events from `stream`, then from every new subscription once it
/// ends, until aborted.
pub(super) fn forward(
    mut stream: PubSubStream,
    sources: Vec<redis::Client>,
    channel: String,
    timeout: Duration,
    events: broadcast::Sender<SessionEnded>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            while let Some(msg) = stream.next().await {
                match serde_json::from_slice::<SessionEnded>(msg.get_payload_bytes()) {
                    // No receiver means no connection is waiting: nothing to tell.
                    Ok(event) => drop(events.send(event)),
                    Err(err) => tracing::warn!(error = %err, "unreadable session-ended event"),
                }
            }
            tracing::warn!("session-ended subscription lost; reconnecting");
            let mut pause = PAUSE_MIN;
            stream = loop {
                tokio::time::sleep(pause).await;
                match subscribe(&sources, &channel, timeout).await {
                    Ok(stream) => break stream,
                    Err(err) => {
                        tracing::debug!(error = %err, "session-ended subscription still down");
                        pause = (pause * 2).min(PAUSE_MAX);
                    }
                }
            };
            tracing::info!("session-ended subscription restored");
        }
    })
}
