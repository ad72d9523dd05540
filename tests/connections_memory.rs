//! Connection sessions on the in-memory store, with a real WebSocket client.

mod support;

use sessionkit::MemoryStore;
use support::connections::*;

#[tokio::test]
async fn logout_elsewhere_closes_the_socket_within_a_second() {
    let store = MemoryStore::new();
    logout_elsewhere_closes_the_socket(store.clone(), store).await;
}

#[tokio::test]
async fn revoking_everywhere_closes_every_socket() {
    let store = MemoryStore::new();
    revoke_everywhere_closes_every_socket(store.clone(), store).await;
}

#[tokio::test]
async fn an_open_socket_keeps_its_session_alive_and_unregisters_on_close() {
    an_open_socket_keeps_the_session_alive(MemoryStore::new()).await;
}

#[tokio::test]
async fn the_connection_follows_token_rotation() {
    rotation_while_connected(MemoryStore::new()).await;
}

#[tokio::test]
async fn the_absolute_timeout_ends_a_connected_session() {
    absolute_timeout_still_applies(MemoryStore::new()).await;
}
