//! Connection sessions on Redis and Redis Cluster, with a real WebSocket
//! client. The two "nodes" of each scenario are independent `RedisStore`
//! clients of one server (or cluster), so what one does reaches the other
//! only through Redis.

mod support;

use sessionkit::RedisStore;
use support::connections::*;
use support::redis::{random_prefix, RedisCluster, RedisServer};

async fn node(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder()
        .prefix(prefix)
        .connect(url)
        .await
        .expect("connect to the test server")
}

async fn cluster_node(urls: &[String], prefix: &str) -> RedisStore {
    RedisStore::builder()
        .prefix(prefix)
        .cluster(urls)
        .await
        .expect("connect to the test cluster")
}

#[tokio::test]
async fn logout_on_another_node_closes_the_socket_within_a_second() {
    let server = RedisServer::shared_or_start();
    let prefix = random_prefix();
    logout_elsewhere_closes_the_socket(
        node(&server.url(), &prefix).await,
        node(&server.url(), &prefix).await,
    )
    .await;
}

#[tokio::test]
async fn revoking_everywhere_from_another_node_closes_every_socket() {
    let server = RedisServer::shared_or_start();
    let prefix = random_prefix();
    revoke_everywhere_closes_every_socket(
        node(&server.url(), &prefix).await,
        node(&server.url(), &prefix).await,
    )
    .await;
}

#[tokio::test]
async fn an_open_socket_keeps_its_session_alive_and_unregisters_on_close() {
    let server = RedisServer::shared_or_start();
    an_open_socket_keeps_the_session_alive(node(&server.url(), &random_prefix()).await).await;
}

#[tokio::test]
async fn the_connection_follows_token_rotation() {
    let server = RedisServer::shared_or_start();
    rotation_while_connected(node(&server.url(), &random_prefix()).await).await;
}

#[tokio::test]
async fn the_absolute_timeout_ends_a_connected_session() {
    let server = RedisServer::shared_or_start();
    absolute_timeout_still_applies(node(&server.url(), &random_prefix()).await).await;
}

#[tokio::test]
async fn on_a_cluster_revoking_from_another_node_closes_every_socket() {
    let cluster = RedisCluster::start();
    let prefix = random_prefix();
    revoke_everywhere_closes_every_socket(
        cluster_node(&cluster.urls(), &prefix).await,
        cluster_node(&cluster.urls(), &prefix).await,
    )
    .await;
    logout_elsewhere_closes_the_socket(
        cluster_node(&cluster.urls(), &prefix).await,
        cluster_node(&cluster.urls(), &prefix).await,
    )
    .await;
}

#[tokio::test]
async fn on_a_cluster_the_connection_follows_token_rotation() {
    let cluster = RedisCluster::start();
    rotation_while_connected(cluster_node(&cluster.urls(), &random_prefix()).await).await;
}
