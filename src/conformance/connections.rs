//! Long connections: registration, leases, fetches that follow rotations, and disconnects.

use super::support::*;

#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance_connections {
    ($($mode:tt)*) => {
        $crate::__sessionkit_conformance! { @list [$($mode)*]
            connect_registers_connection,
            connection_lease_runs_out,
            fetch_refreshes_session_and_lease,
            fetch_follows_rotation,
            fetch_never_adopts_the_replacement,
            disconnect_removes_connection,
            destroy_removes_connections,
            fetch_gone_session,
        }
    };
}

/// `connect` registers a connection under a live session (`true`) and
/// `list_connections` shows it with its id, node, session and opening
/// time; connecting to a destroyed, expired or unknown session is `false`
/// and registers nothing.
pub async fn connect_registers_connection<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let alice = unique_user("kim");
    let bob = unique_user("lee");
    let a1 = log_in(&store, &alice, t0).await;
    let a2 = log_in(&store, &alice, t0 + SECOND).await;
    let b1 = log_in(&store, &bob, t0 + 2 * SECOND).await;
    let (mut short, short_token) = login_request(&alice, t0);
    short.session.idle_timeout = 5 * MINUTE;
    let expiring = submit(&store, short, short_token).await;
    let gone = log_in(&store, &alice, t0 + 3 * SECOND).await;
    ok(
        store
            .destroy(&Destroy {
                id: gone.id.clone(),
                reason: EndReason::LoggedOut,
                now: t0 + 3 * SECOND,
            })
            .await,
        "destroy",
    );
    let t1 = t0 + 4 * SECOND;
    let until = t1 + HOUR;
    let c1 = connection(&a1.id, "node-a", t1);
    let c2 = connection(&a2.id, "node-b", t1);
    let c3 = connection(&b1.id, "node-a", t1);
    for conn in [&c1, &c2, &c3] {
        assert!(
            connect(&store, conn, until, t1).await,
            "connect to a live session returned false"
        );
    }
    assert_eq!(
        connections(&store, &alice, t1 + SECOND).await,
        sorted(vec![c1.clone(), c2.clone()]),
        "list_connections must show the user's connections exactly as registered"
    );
    assert_eq!(
        connections(&store, &bob, t1 + SECOND).await,
        vec![c3],
        "list_connections must show only that user's connections"
    );
    let to_gone = connection(&gone.id, "node-a", t1);
    assert!(
        !connect(&store, &to_gone, until, t1 + SECOND).await,
        "connect to a destroyed session returned true"
    );
    let never = SessionId::generate(&Tag::for_user(&alice));
    assert!(
        !connect(
            &store,
            &connection(&never, "node-a", t1),
            until,
            t1 + SECOND
        )
        .await,
        "connect to a session that never existed returned true"
    );
    let dead = t0 + 5 * MINUTE;
    assert!(
        !connect(
            &store,
            &connection(&expiring.id, "node-a", dead),
            until,
            dead
        )
        .await,
        "connect to an expired session returned true"
    );
    expect_missing(
        load(&store, &expiring.token, dead).await,
        "loading an expired session after a connect tried to register under it",
    );
    assert_eq!(
        connections(&store, &alice, dead).await,
        sorted(vec![c1, c2]),
        "a refused connect registered a connection"
    );
}

/// A connection whose lease ran out is no longer listed (1 ms before, it
/// is), while its session lives on.
pub async fn connection_lease_runs_out<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("max");
    let member = log_in(&store, &user, t0).await;
    let conn = connection(&member.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + LEASE, t0).await,
        "connect returned false"
    );
    assert_eq!(
        connections(&store, &user, t0 + LEASE - 1).await,
        vec![conn],
        "a connection 1 ms before its lease ends must be listed"
    );
    assert_eq!(
        connections(&store, &user, t0 + LEASE).await,
        Vec::<Connection>::new(),
        "a connection whose lease ran out must not be listed"
    );
    expect_current(
        load(&store, &member.token, t0 + LEASE + 1).await,
        "loading a session whose connection's lease ran out",
    );
}

/// `fetch` with a lease returns the session refreshed (`last_seen` = now,
/// so its idle deadline moves), extends the connection's lease, and for the
/// current token reports no replacement and `known_is_current`.
pub async fn fetch_refreshes_session_and_lease<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("nina");
    let (mut login, token) = login_request(&user, t0);
    login.delta = set(&[("a", "1")]);
    let member = submit(&store, login, token).await;
    let conn = connection(&member.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + LEASE, t0).await,
        "connect returned false"
    );
    let t1 = t0 + LEASE - SECOND;
    let Some(fetched) = fetch(
        &store,
        &member.id,
        Some(&member.token),
        Some((&conn, t1 + LEASE)),
        t1,
    )
    .await
    else {
        panic!("fetch of a live session returned None");
    };
    assert_eq!(
        fetched.record.id, member.id,
        "fetch returned another session"
    );
    assert_eq!(
        fetched.record.last_seen, t1,
        "fetch must refresh last_seen to now"
    );
    assert_eq!(
        fetched.record.data,
        data(&[("a", "1")]),
        "fetch returned other data"
    );
    assert_eq!(
        fetched.replacement, None,
        "fetch with the current token reported a replacement"
    );
    assert!(
        fetched.known_is_current,
        "fetch with the current token: known_is_current must be true"
    );
    assert_eq!(
        connections(&store, &user, t0 + LEASE + SECOND).await,
        vec![conn.clone()],
        "after the original lease ended, a connection whose lease fetch extended must be listed"
    );
    assert_eq!(
        connections(&store, &user, t1 + LEASE).await,
        Vec::<Connection>::new(),
        "a connection must not be listed once the lease fetch set ran out"
    );
    let record = expect_current(
        probe(&store, &member.token, t0 + IDLE + SECOND).await,
        "loading the session past its original idle deadline after a fetch refreshed it",
    );
    assert_eq!(record.last_seen, t1, "the refresh by fetch was not stored");
}

/// After a rotation, `fetch` with the old token as `known` reports the
/// replacement sealed under it and `known_is_current == false`; with the
/// new token, no replacement and `true`; once OJS is over, the old token
/// gets no replacement any more.
pub async fn fetch_follows_rotation<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("otto");
    let member = log_in(&store, &user, t0).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let Some(fetched) = fetch(&store, &member.id, Some(&member.token), None, t1 + SECOND).await
    else {
        panic!("fetch of a live session after a rotation returned None");
    };
    match &fetched.replacement {
        Some(sealed) => opens_to(
            &member.token,
            sealed,
            &new,
            "fetch with the old token as known",
        ),
        None => panic!(
            "fetch with the old token as known, inside OJS: expected a replacement, got None"
        ),
    }
    assert!(
        !fetched.known_is_current,
        "fetch with the old token as known: known_is_current must be false"
    );
    assert_eq!(
        fetched.record.ttg, t1,
        "fetch after a rotation: TTG must be the rotation's now"
    );
    let Some(fetched) = fetch(&store, &member.id, Some(&new), None, t1 + 2 * SECOND).await else {
        panic!("fetch of a live session returned None");
    };
    assert_eq!(
        fetched.replacement, None,
        "fetch with the new token reported a replacement"
    );
    assert!(
        fetched.known_is_current,
        "fetch with the new token: known_is_current must be true"
    );
    let Some(fetched) = fetch(&store, &member.id, None, None, t1 + 2 * SECOND).await else {
        panic!("fetch of a live session returned None");
    };
    assert_eq!(
        fetched.replacement, None,
        "fetch without a known token reported a replacement"
    );
    assert!(
        !fetched.known_is_current,
        "fetch without a known token: known_is_current must be false"
    );
    expect_current(
        load(&store, &new, t1 + 3 * SECOND).await,
        "adopting the replacement",
    );
    let Some(fetched) = fetch(&store, &member.id, Some(&member.token), None, t1 + OJS).await else {
        panic!("fetch of a live session after OJS returned None");
    };
    assert_eq!(
        fetched.replacement, None,
        "fetch with the old token as known after OJS must report no replacement"
    );
    assert!(
        !fetched.known_is_current,
        "fetch with the old token as known after OJS: known_is_current must be false"
    );
}

/// `fetch` never adopts a replacement: after a connection fetched it (the
/// old token as known), the old token still gets it on a grace load, and the
/// unadopted replacement counts as the current token for `known_is_current`.
pub async fn fetch_never_adopts_the_replacement<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("quin");
    let member = log_in(&store, &user, t0).await;
    let t1 = t0 + MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let Some(fetched) = fetch(&store, &member.id, Some(&member.token), None, t1 + SECOND).await
    else {
        panic!("fetch inside the old token's grace window returned None");
    };
    assert!(
        fetched.replacement.is_some(),
        "fetch with the old token as known, inside OJS, must hand out the replacement"
    );
    let Some(fetched) = fetch(&store, &member.id, Some(&new), None, t1 + 2 * SECOND).await else {
        panic!("fetch inside the old token's grace window returned None");
    };
    assert!(
        fetched.known_is_current,
        "an unadopted replacement must count as the current token"
    );
    expect_replacement(
        load(&store, &member.token, t1 + 3 * SECOND).await,
        &member.token,
        &new,
        "a grace load of the old token after fetches (a fetch must not adopt the replacement)",
    );
}

/// `disconnect` removes a connection (others stay); disconnecting again,
/// an unknown connection, or under an unknown session is harmless; a late
/// `fetch` carrying the removed connection's lease does not register it
/// again.
pub async fn disconnect_removes_connection<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("quinn");
    let member = log_in(&store, &user, t0).await;
    let c1 = connection(&member.id, "node-a", t0);
    let c2 = connection(&member.id, "node-b", t0);
    assert!(
        connect(&store, &c1, t0 + HOUR, t0).await,
        "connect returned false"
    );
    assert!(
        connect(&store, &c2, t0 + HOUR, t0).await,
        "connect returned false"
    );
    ok(
        store
            .disconnect(&Disconnect {
                id: member.id.clone(),
                connection_id: c1.id.to_owned(),
                now: t0,
            })
            .await,
        "disconnect",
    );
    assert_eq!(
        connections(&store, &user, t0 + SECOND).await,
        vec![c2.clone()],
        "after disconnect of one of two connections, exactly the other must be listed"
    );
    ok(
        store
            .disconnect(&Disconnect {
                id: member.id.clone(),
                connection_id: c1.id.to_owned(),
                now: t0,
            })
            .await,
        "disconnect of a removed connection",
    );
    ok(
        store
            .disconnect(&Disconnect {
                id: member.id.clone(),
                connection_id: "no-such-connection".to_owned(),
                now: t0,
            })
            .await,
        "disconnect of an unknown connection",
    );
    let never = SessionId::generate(&Tag::random());
    ok(
        store
            .disconnect(&Disconnect {
                id: never.clone(),
                connection_id: c2.id.to_owned(),
                now: t0,
            })
            .await,
        "disconnect under an unknown session",
    );
    let fetched = fetch(
        &store,
        &member.id,
        None,
        Some((&c1, t0 + 2 * HOUR)),
        t0 + 2 * SECOND,
    )
    .await;
    assert!(fetched.is_some(), "fetch of a live session returned None");
    assert_eq!(
        connections(&store, &user, t0 + 3 * SECOND).await,
        vec![c2],
        "a fetch carrying the lease of a disconnected connection registered it again"
    );
}

/// Ending a session (`destroy`, or `revoke`) removes its connections; a
/// new session of the same user does not inherit them.
pub async fn destroy_removes_connections<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("rosa");
    let s1 = log_in(&store, &user, t0).await;
    let s2 = log_in(&store, &user, t0 + SECOND).await;
    let c1 = connection(&s1.id, "node-a", t0 + SECOND);
    let c2 = connection(&s1.id, "node-b", t0 + SECOND);
    let c3 = connection(&s2.id, "node-a", t0 + SECOND);
    for conn in [&c1, &c2, &c3] {
        assert!(
            connect(&store, conn, t0 + HOUR, t0 + SECOND).await,
            "connect returned false"
        );
    }
    let t1 = t0 + 2 * SECOND;
    ok(
        store
            .destroy(&Destroy {
                id: s1.id.clone(),
                reason: EndReason::LoggedOut,
                now: t1,
            })
            .await,
        "destroy",
    );
    assert_eq!(
        connections(&store, &user, t1).await,
        vec![c3],
        "after destroying a session, its connections are still listed"
    );
    revoke(&store, &user, Revoke::One(s2.id.clone()), t1).await;
    assert_eq!(
        connections(&store, &user, t1).await,
        Vec::<Connection>::new(),
        "after revoking a session, its connections are still listed"
    );
    log_in(&store, &user, t1 + SECOND).await;
    assert_eq!(
        connections(&store, &user, t1 + SECOND).await,
        Vec::<Connection>::new(),
        "a new session of the user lists the connections of ended ones"
    );
}

/// `fetch` of a destroyed, expired or unknown session is `None`, and a
/// fetch with a lease does not revive an expired session.
pub async fn fetch_gone_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("sam");
    let destroyed = log_in(&store, &user, t0).await;
    let expiring = log_in(&store, &user, t0).await;
    let conn = connection(&expiring.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + 2 * IDLE, t0).await,
        "connect returned false"
    );
    ok(
        store
            .destroy(&Destroy {
                id: destroyed.id.clone(),
                reason: EndReason::LoggedOut,
                now: t0,
            })
            .await,
        "destroy",
    );
    assert!(
        fetch(
            &store,
            &destroyed.id,
            Some(&destroyed.token),
            None,
            t0 + SECOND
        )
        .await
        .is_none(),
        "fetch of a destroyed session returned Some"
    );
    let never = SessionId::generate(&Tag::random());
    assert!(
        fetch(&store, &never, None, None, t0 + SECOND)
            .await
            .is_none(),
        "fetch of a session that never existed returned Some"
    );
    let dead = t0 + IDLE;
    assert!(
        fetch(
            &store,
            &expiring.id,
            Some(&expiring.token),
            Some((&conn, dead + HOUR)),
            dead
        )
        .await
        .is_none(),
        "fetch of a session at its idle deadline returned Some"
    );
    expect_missing(
        load(&store, &expiring.token, dead + SECOND).await,
        "loading an expired session after a fetch with a lease",
    );
    assert_eq!(
        listed_ids(&store, &user, dead + SECOND).await,
        Vec::<SessionId>::new(),
        "an expired session is listed after a fetch with a lease"
    );
    assert_eq!(
        connections(&store, &user, dead + SECOND).await,
        Vec::<Connection>::new(),
        "an expired session's connection is listed"
    );
}
