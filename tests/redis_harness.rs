//! Tests of the Redis test harness itself: private servers that start,
//! hang, resume, die and come back on the same port, and a private
//! 3-master cluster.

mod support;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use redis::AsyncCommands;
use support::redis::*;

async fn get(con: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    con.get(key).await.expect("GET")
}

fn process_exists(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run kill -0")
        .success()
}

fn temp_dirs_of(pid: u32) -> Vec<String> {
    let prefix = format!("sessionkit-redis-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .expect("read the temp dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .filter(|name| {
            std::fs::read_to_string(std::env::temp_dir().join(name).join("redis.log"))
                .is_ok_and(|log| log.contains(&format!("pid={pid},")))
        })
        .collect()
}

#[tokio::test]
async fn a_private_server_answers_and_the_helpers_see_its_keys() {
    let server = RedisServer::start();
    assert!(server.is_private());
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert_ne!(server.port(), 6379);

    let prefix = random_prefix();
    assert!(prefix.starts_with('t') && prefix.ends_with(':'));
    assert_ne!(prefix, random_prefix());

    let mut con = connection(&server.url()).await;
    let key = format!("{prefix}a");
    let _: () = con.set(&key, "one").await.expect("SET");
    assert_eq!(get(&mut con, &key).await.as_deref(), Some("one"));
    let _: () = con.set(format!("{prefix}b"), "two").await.expect("SET");
    let _: () = con.set("other", "x").await.expect("SET");
    let _: bool = con.pexpire(&key, 60_000).await.expect("PEXPIRE");

    let ttl = ttl_ms(&server.url(), &key).await;
    assert!((59_000..=60_000).contains(&ttl), "PTTL {ttl}");
    assert_eq!(ttl_ms(&server.url(), &format!("{prefix}b")).await, -1);
    assert_eq!(ttl_ms(&server.url(), "missing").await, -2);

    assert_eq!(dbsize(&server.url()).await, 3);
    assert_eq!(
        keys(&server.url(), &format!("{prefix}*")).await,
        vec![format!("{prefix}a"), format!("{prefix}b")]
    );

    let stats = command_stats(&server.url()).await;
    assert_eq!(stats.get("set"), Some(&3), "{stats:?}");
    assert_eq!(stats.get("get"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("pexpire"), Some(&1), "{stats:?}");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut con)
        .await
        .expect("CONFIG RESETSTAT");
    let stats = command_stats(&server.url()).await;
    assert_eq!(stats.get("set"), None, "{stats:?}");
    assert_eq!(stats.get("config|resetstat"), Some(&1), "{stats:?}");
}

#[tokio::test]
async fn a_stopped_server_hangs_until_it_is_continued() {
    let server = RedisServer::start();
    let mut con = connection(&server.url()).await;
    let _: () = con.set("k", "v").await.expect("SET");

    server.stop();
    let hung = tokio::time::timeout(Duration::from_millis(300), get(&mut con, "k")).await;
    assert!(hung.is_err(), "a stopped server answered: {hung:?}");

    server.cont();
    let answered = tokio::time::timeout(Duration::from_secs(2), get(&mut con, "k"))
        .await
        .expect("a continued server answers");
    assert_eq!(answered.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_killed_server_restarts_empty_on_the_same_port() {
    let mut server = RedisServer::start();
    let (port, url, pid) = (server.port(), server.url(), server.pid());
    let mut con = connection(&url).await;
    let _: () = con.set("k", "v").await.expect("SET");

    server.kill();
    assert!(!process_exists(pid), "the killed server still runs");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port still accepts connections"
    );
    let down: Result<redis::RedisResult<Option<String>>, _> =
        tokio::time::timeout(Duration::from_secs(2), con.get("k")).await;
    assert!(
        matches!(down, Ok(Err(_))),
        "a GET on a killed server did not fail: {down:?}"
    );

    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.url(), url);
    assert_ne!(server.pid(), pid);
    assert_eq!(dbsize(&url).await, 0, "no persistence across a kill");
    let mut con = connection(&url).await;
    let _: () = con.set("k", "w").await.expect("SET after restart");
    assert_eq!(get(&mut con, "k").await.as_deref(), Some("w"));
}

#[test]
fn drop_kills_the_server_and_removes_its_directory() {
    let server = RedisServer::start();
    let pid = server.pid();
    assert!(process_exists(pid));
    assert_eq!(temp_dirs_of(pid).len(), 1);
    drop(server);
    assert!(
        !process_exists(pid),
        "redis-server {pid} outlived its handle"
    );
    assert_eq!(temp_dirs_of(pid), Vec::<String>::new());
}

#[test]
#[should_panic(expected = "fault tests need a private server")]
fn a_shared_server_cannot_be_stopped() {
    let shared = RedisServer::shared("redis://127.0.0.1:7001/0");
    assert!(!shared.is_private());
    assert_eq!(shared.port(), 7001);
    assert_eq!(shared.url(), "redis://127.0.0.1:7001/0");
    shared.stop();
}

#[tokio::test]
async fn a_cluster_spreads_keys_over_its_three_masters() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let client = redis::cluster::ClusterClient::new(urls.clone()).expect("cluster client");
    let mut con = client.get_async_connection().await.expect("connect");

    let prefix = random_prefix();
    for i in 0..50 {
        let _: () = con
            .set(format!("{prefix}{i}"), i)
            .await
            .expect("SET on the cluster");
    }
    for i in 0..50 {
        let value: Option<i64> = con.get(format!("{prefix}{i}")).await.expect("GET");
        assert_eq!(value, Some(i));
    }

    assert_eq!(cluster_keys(&urls, &format!("{prefix}*")).await.len(), 50);
    if cluster.is_private() {
        assert_eq!(urls.len(), 3);
        let mut masters = cluster_masters(&urls[1..]).await;
        masters.sort();
        let mut sorted = urls.clone();
        sorted.sort();
        assert_eq!(masters, sorted, "CLUSTER NODES lists the three masters");
        assert_eq!(cluster_dbsize(&urls).await, 50);
        for url in &urls {
            let n = dbsize(url).await;
            assert!(n > 0 && n < 50, "{url} holds {n} of the 50 keys");
        }
    }
}
