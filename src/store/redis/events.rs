//! The session-ended feed across processes: scripts `PUBLISH` an event
//! whenever they end a session, and every store listens on a dedicated
//! pub/sub connection and forwards what it hears to its local subscribers.
//!
//! The subscription is checked with a `PING` every few command timeouts, so
//! a connection that went silent is noticed, not only one that broke. A lost
//! subscription is re-established with a growing pause. Events published
//! while it was down are not replayed: connections notice an ended session
//! at their next heartbeat instead.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::store::{Result, SessionEnded, StoreError};

const PAUSE_MIN: Duration = Duration::from_millis(50);
const PAUSE_MAX: Duration = Duration::from_secs(2);
/// The subscription is pinged every this many command timeouts.
const PING_EVERY_TIMEOUTS: u32 = 5;

/// A live subscription: the sink (to ping) and the stream of messages.
pub(super) type Subscription = (PubSubSink, PubSubStream);

/// Opens a pub/sub connection subscribed to `channel` on the first of
/// `sources` that answers within `timeout`.
pub(super) async fn subscribe(
    sources: &[redis::Client],
    channel: &str,
    timeout: Duration,
) -> Result<Subscription> {
    let mut last = StoreError::backend("no Redis server to subscribe to");
    for client in sources {
        let attempt = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            sink.subscribe(channel).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(subscription)) => return Ok(subscription),
            Ok(Err(err)) => last = StoreError::backend(err),
            Err(_) => last = StoreError::timeout(),
        }
    }
    Err(last)
}

/// Forwards events from `subscription` until it breaks or stops answering
/// pings, then from a new one, and so on until aborted.
pub(super) fn forward(
    mut subscription: Subscription,
    sources: Vec<redis::Client>,
    channel: String,
    timeout: Duration,
    events: broadcast::Sender<SessionEnded>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            listen(&mut subscription, timeout, &events).await;
            tracing::warn!("session-ended subscription lost; reconnecting");
            let mut pause = PAUSE_MIN;
            subscription = loop {
                tokio::time::sleep(pause).await;
                match subscribe(&sources, &channel, timeout).await {
                    Ok(subscription) => break subscription,
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

/// Forwards messages until the subscription ends or a ping goes unanswered.
async fn listen(
    (sink, stream): &mut Subscription,
    timeout: Duration,
    events: &broadcast::Sender<SessionEnded>,
) {
    let mut ping = tokio::time::interval(timeout.saturating_mul(PING_EVERY_TIMEOUTS));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate: just subscribed
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => match serde_json::from_slice::<SessionEnded>(msg.get_payload_bytes()) {
                    // No receiver means no connection is waiting: nothing to tell.
                    Ok(event) => drop(events.send(event)),
                    Err(err) => tracing::warn!(error = %err, "unreadable session-ended event"),
                },
                None => return,
            },
            _ = ping.tick() => {
                let pong = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}
