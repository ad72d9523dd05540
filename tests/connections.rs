//! Connection sessions (WebSockets) with a real WebSocket client against a
//! real server, on every store. The two "nodes" of the cross-node scenarios
//! are two clients of one store: clones of one `MemoryStore`, or
//! independent `RedisStore` connections, so that on Redis what one node
//! does reaches the other only through Redis.

mod support;

use std::sync::Arc;

use sessionkit::{ManualClock, SessionStore};
use support::connections::*;
use support::stores::{on_every_store, Backend, TestStore};

on_every_store! {
    logout_on_another_node_closes_the_socket_within_a_second,
    revoking_everywhere_from_another_node_closes_every_socket,
    an_open_socket_keeps_its_session_alive_and_unregisters_on_close,
    the_connection_follows_token_rotation,
    the_absolute_timeout_ends_a_connected_session,
    a_rotation_on_another_node_reaches_the_socket,
    a_socket_that_cannot_follow_a_rotation_closes_with_token_lost,
    a_graceful_shutdown_releases_every_connection,
}

async fn a_graceful_shutdown_releases_every_connection(backend: Backend) {
    shutdown_releases_every_connection(one_node(backend).await).await;
}

/// Two clients of one fresh store.
async fn two_nodes(backend: Backend) -> (Arc<dyn SessionStore>, Arc<dyn SessionStore>) {
    let store = TestStore::new(backend, &ManualClock::new()).await;
    (store.store.clone(), store.another_client().await)
}

async fn a_rotation_on_another_node_reaches_the_socket(backend: Backend) {
    let (a, b) = two_nodes(backend).await;
    rotation_on_another_node_reaches_the_connection(a, b).await;
}

async fn a_socket_that_cannot_follow_a_rotation_closes_with_token_lost(backend: Backend) {
    let (a, b) = two_nodes(backend).await;
    a_connection_that_cannot_follow_a_rotation_closes(a, b).await;
}

async fn one_node(backend: Backend) -> Arc<dyn SessionStore> {
    TestStore::new(backend, &ManualClock::new()).await.store
}

async fn logout_on_another_node_closes_the_socket_within_a_second(backend: Backend) {
    let (a, b) = two_nodes(backend).await;
    logout_elsewhere_closes_the_socket(a, b).await;
}

async fn revoking_everywhere_from_another_node_closes_every_socket(backend: Backend) {
    let (a, b) = two_nodes(backend).await;
    revoke_everywhere_closes_every_socket(a, b).await;
}

async fn an_open_socket_keeps_its_session_alive_and_unregisters_on_close(backend: Backend) {
    an_open_socket_keeps_the_session_alive(one_node(backend).await).await;
}

async fn the_connection_follows_token_rotation(backend: Backend) {
    rotation_while_connected(one_node(backend).await).await;
}

async fn the_absolute_timeout_ends_a_connected_session(backend: Backend) {
    absolute_timeout_still_applies(one_node(backend).await).await;
}
