//! A user's sessions: listing, revoking, and keeping the user index in step.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::support::*;
use crate::device::{Device, MAX_USER_AGENT};

#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance_users {
    ($($mode:tt)*) => {
        $crate::__sessionkit_conformance! { @list [$($mode)*]
            list_sessions_reports_metadata,
            list_sessions_prunes_expired,
            user_index_empties_after_expiry,
            revoke_scopes,
            revoke_ignores_other_users,
            concurrent_logins_and_revokes_stay_consistent,
            sync_user_updates_live_sessions,
            empty_label_and_user_id_are_kept,
            devices_are_listed,
        }
    };
}

/// `list_sessions` returns every live session of the user, oldest first,
/// with exact metadata (created, last_seen, idle and absolute deadlines,
/// label), and nothing that contains a token or its digest.
pub async fn list_sessions_reports_metadata<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("frank");
    let mut expected = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..6u64 {
        let now = t0 + i * SECOND;
        let (mut login, token) = login_request(&user, now);
        login.session.label = (i % 2 == 0).then(|| format!("device {i}"));
        login.session.absolute_deadline = (i % 3 == 0).then_some(t0 + 8 * HOUR);
        if i == 5 {
            login.session.idle_timeout = 10 * MINUTE;
        }
        expected.push(SessionInfo {
            id: login.session.id.clone(),
            created_at: now,
            last_seen: now,
            idle_deadline: now + login.session.idle_timeout,
            absolute_deadline: login.session.absolute_deadline,
            label: login.session.label.clone(),
            device: login.session.device.clone(),
        });
        tokens.push(token.clone());
        submit(&store, login, token).await;
    }
    let t1 = t0 + 2 * REFRESH;
    expect_current(
        load(&store, &tokens[0], t1).await,
        "loading the oldest session",
    );
    expected[0].last_seen = t1;
    expected[0].idle_deadline = t1 + IDLE;
    let listing = list(&store, &user, t1).await;
    assert_eq!(
        listing, expected,
        "list_sessions must return every live session of the user, oldest first, with its metadata"
    );
    let json = match serde_json::to_string(&listing) {
        Ok(json) => json,
        Err(err) => panic!("a session listing does not serialize: {err}"),
    };
    for token in &tokens {
        assert!(
            !json.contains(token.as_str()) && !json.contains(&token.digest().hash),
            "a session listing contains a token or a token digest"
        );
    }
    assert_eq!(
        listed_ids(&store, &unique_user("nobody"), t1).await,
        Vec::<SessionId>::new(),
        "a user without sessions has a non-empty listing"
    );
}

/// Expired sessions drop out of the user's listing, and neither
/// `revoke(All)` nor `sync_user` counts them.
pub async fn list_sessions_prunes_expired<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("grace");
    let (mut short, short_token) = login_request(&user, t0);
    short.session.idle_timeout = 5 * MINUTE;
    let short = submit(&store, short, short_token).await;
    let long = log_in(&store, &user, t0 + SECOND).await;
    let t1 = t0 + 5 * MINUTE;
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![long.id.clone()],
        "a session past its idle deadline is still listed"
    );
    expect_missing(
        load(&store, &short.token, t1).await,
        "loading the expired session",
    );
    assert_eq!(
        ok(
            store
                .sync_user(&SyncUser {
                    user: bound(&user, 2),
                    now: t1
                })
                .await,
            "sync_user"
        ),
        1,
        "sync_user counted an expired session"
    );
    assert_eq!(
        revoke(&store, &user, Revoke::All, t1).await,
        vec![long.id],
        "revoke(All) must return exactly the live sessions it revoked"
    );
}

/// 1,000 logins of one user (no limit) are all listed; once past their idle
/// deadline the listing is empty and nothing is left to revoke or sync.
pub async fn user_index_empties_after_expiry<S: SessionStore + Clone>(store: S) {
    const MANY: usize = 1_000;
    const BATCH: usize = 50;
    let user = unique_user("henry");
    let mut ids = HashSet::new();
    let mut some_token = None;
    // This takes a while on a networked store: let logical time catch up
    // with the real clock between batches, so no call is given a time far
    // behind it.
    let mut now = start();
    for _ in 0..MANY / BATCH {
        now = now.max(SystemClock.now());
        let batch = (0..BATCH).map(|_| log_in(&store, &user, now));
        for member in join_all(batch).await {
            ids.insert(member.id);
            some_token = Some(member.token);
        }
    }
    // Every session's idle deadline is at most `now + IDLE`.
    let t1 = now.max(SystemClock.now()) + SECOND;
    let listed: HashSet<SessionId> = listed_ids(&store, &user, t1).await.into_iter().collect();
    assert!(
        listed == ids,
        "after {MANY} logins of one user: {} of them listed, {} listed ids unknown",
        listed.intersection(&ids).count(),
        listed.difference(&ids).count()
    );
    let dead = (now + IDLE).max(t1);
    let left = listed_ids(&store, &user, dead).await;
    assert!(
        left.is_empty(),
        "after the idle deadline of {MANY} sessions, {} are still listed",
        left.len()
    );
    if let Some(token) = some_token {
        expect_missing(
            load(&store, &token, dead).await,
            "loading one of the expired sessions",
        );
    }
    assert_eq!(
        revoke(&store, &user, Revoke::All, dead).await,
        Vec::<SessionId>::new(),
        "revoke(All) of a user whose sessions all expired revoked something"
    );
    assert_eq!(
        ok(
            store
                .sync_user(&SyncUser {
                    user: bound(&user, 2),
                    now: dead
                })
                .await,
            "sync_user"
        ),
        0,
        "sync_user of a user whose sessions all expired updated something"
    );
}

/// `revoke` with `One`, `AllExcept` and `All` returns exactly the ids it
/// revoked (nothing for ids already gone), kills their tokens, updates the
/// listing and publishes `Revoked` for each.
pub async fn revoke_scopes<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("ivy");
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(log_in(&store, &user, t0 + i * SECOND).await);
    }
    let [a, b, c, d, e] = &members[..] else {
        unreachable!("five sessions were logged in")
    };
    let mut events = store.subscribe();
    let t1 = t0 + MINUTE;
    assert_eq!(
        revoke(&store, &user, Revoke::One(a.id.clone()), t1).await,
        vec![a.id.clone()],
        "revoke(One(a)) must return [a]"
    );
    expect_missing(
        load(&store, &a.token, t1).await,
        "loading a revoked session",
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&a.id),
        EndReason::Revoked,
        "a session revoked with One",
    )
    .await;
    assert_eq!(
        revoke(&store, &user, Revoke::One(a.id.clone()), t1).await,
        Vec::<SessionId>::new(),
        "revoking an already revoked session must return nothing"
    );
    let revoked: HashSet<SessionId> = revoke(&store, &user, Revoke::AllExcept(b.id.clone()), t1)
        .await
        .into_iter()
        .collect();
    assert_eq!(
        revoked,
        HashSet::from([c.id.clone(), d.id.clone(), e.id.clone()]),
        "revoke(AllExcept(b)) must return exactly the other live sessions"
    );
    for m in [c, d, e] {
        expect_missing(
            load(&store, &m.token, t1).await,
            "loading a session revoked by AllExcept",
        );
    }
    expect_current(
        load(&store, &b.token, t1).await,
        "loading the session AllExcept kept",
    );
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![b.id.clone()],
        "after revoke(AllExcept(b)) only b must be listed"
    );
    expect_events(
        &mut events,
        &[c.id.clone(), d.id.clone(), e.id.clone()],
        EndReason::Revoked,
        "sessions revoked with AllExcept",
    )
    .await;
    assert_eq!(
        revoke(&store, &user, Revoke::All, t1).await,
        vec![b.id.clone()],
        "revoke(All) must return the last live session"
    );
    expect_missing(
        load(&store, &b.token, t1).await,
        "loading a session revoked by All",
    );
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        Vec::<SessionId>::new(),
        "after revoke(All) nothing must be listed"
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&b.id),
        EndReason::Revoked,
        "a session revoked with All",
    )
    .await;
    assert_eq!(
        revoke(&store, &user, Revoke::All, t1).await,
        Vec::<SessionId>::new(),
        "revoke(All) of a user without sessions must return nothing"
    );
}

/// `revoke` only touches the given user's sessions: revoking another
/// user's (or an anonymous) session id by `One` returns nothing and that
/// session still loads and stays listed.
pub async fn revoke_ignores_other_users<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let alice = unique_user("alice");
    let bob = unique_user("bob");
    let a = log_in(&store, &alice, t0).await;
    let b = log_in(&store, &bob, t0).await;
    let (anon, anon_token) = create(&store, t0, &[]).await;
    let t1 = t0 + SECOND;
    assert_eq!(
        revoke(&store, &bob, Revoke::One(a.id.clone()), t1).await,
        Vec::<SessionId>::new(),
        "revoking another user's session by id must do nothing"
    );
    assert_eq!(
        revoke(&store, &alice, Revoke::One(b.id.clone()), t1).await,
        Vec::<SessionId>::new(),
        "revoking another user's session by id must do nothing"
    );
    assert_eq!(
        revoke(&store, &alice, Revoke::One(anon.clone()), t1).await,
        Vec::<SessionId>::new(),
        "revoking an anonymous session through a user must do nothing"
    );
    expect_current(
        load(&store, &a.token, t1).await,
        "loading alice's session after bob revoked its id",
    );
    expect_current(
        load(&store, &b.token, t1).await,
        "loading bob's session after alice revoked its id",
    );
    expect_current(
        load(&store, &anon_token, t1).await,
        "loading an anonymous session after a user revoked its id",
    );
    assert_eq!(
        listed_ids(&store, &alice, t1).await,
        vec![a.id.clone()],
        "alice's listing changed after bob revoked her session's id"
    );
    assert_eq!(
        revoke(&store, &bob, Revoke::All, t1).await,
        vec![b.id],
        "revoke(All) of bob must revoke exactly bob's session"
    );
    expect_current(
        load(&store, &a.token, t1).await,
        "loading alice's session after bob's revoke(All)",
    );
}

/// 20 logins racing 5 `revoke(All)` of the same user leave a consistent
/// state: every session is either listed (and loads) or was returned by
/// exactly one revoke (and does not load).
pub async fn concurrent_logins_and_revokes_stay_consistent<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("jack");
    let mut logins = Vec::new();
    let mut revokes = Vec::new();
    for i in 0..20 {
        let (s, u) = (store.clone(), user.clone());
        logins.push(tokio::spawn(async move {
            let member = log_in(&s, &u, t0).await;
            (member.id, member.token)
        }));
        if i % 4 == 3 {
            let (s, u) = (store.clone(), user.clone());
            revokes.push(tokio::spawn(async move {
                revoke(&s, &u, Revoke::All, t0).await
            }));
        }
    }
    let sessions = join(logins).await;
    let revoked_lists = join(revokes).await;
    let revoked_total: usize = revoked_lists.iter().map(Vec::len).sum();
    let revoked: HashSet<SessionId> = revoked_lists.into_iter().flatten().collect();
    assert_eq!(
        revoked.len(),
        revoked_total,
        "two concurrent revoke(All) calls returned the same session"
    );
    let t1 = t0 + SECOND;
    let listed: HashSet<SessionId> = listed_ids(&store, &user, t1).await.into_iter().collect();
    for (id, token) in &sessions {
        let lookup = probe(&store, token, t1).await;
        match (listed.contains(id), revoked.contains(id)) {
            (true, false) => {
                expect_current(lookup, "loading a listed session after logins raced revokes");
            }
            (false, true) => {
                expect_missing(lookup, "loading a revoked session after logins raced revokes");
            }
            (true, true) => panic!(
                "after logins raced revokes: session {id} was returned by a revoke but is still listed ({})",
                describe(&lookup)
            ),
            (false, false) => panic!(
                "after logins raced revokes: session {id} is neither listed nor revoked ({})",
                describe(&lookup)
            ),
        }
    }
    let known: HashSet<&SessionId> = sessions.iter().map(|(id, _)| id).collect();
    assert!(
        listed.iter().all(|id| known.contains(id)),
        "after logins raced revokes: the listing holds ids no login created"
    );
}

/// `sync_user` replaces the user object in every live session of that user
/// (returning how many), leaves their data alone, and touches neither
/// other users' sessions nor ended ones.
pub async fn sync_user_updates_live_sessions<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let alice = unique_user("alice");
    let bob = unique_user("bob");
    let (mut first, first_token) = login_request(&alice, t0);
    first.delta = set(&[("x", "1")]);
    let a1 = submit(&store, first, first_token).await;
    let a2 = log_in(&store, &alice, t0 + SECOND).await;
    let gone = log_in(&store, &alice, t0 + 2 * SECOND).await;
    let (mut short, short_token) = login_request(&alice, t0 + 3 * SECOND);
    short.session.idle_timeout = 5 * MINUTE;
    let expired = submit(&store, short, short_token).await;
    let b1 = log_in(&store, &bob, t0 + 4 * SECOND).await;
    ok(
        store
            .destroy(&Destroy {
                id: gone.id.clone(),
                reason: EndReason::LoggedOut,
                now: t0 + 5 * SECOND,
            })
            .await,
        "destroy",
    );
    let t1 = t0 + 3 * SECOND + 5 * MINUTE;
    let updated = bound(&alice, 2);
    assert_eq!(
        ok(
            store
                .sync_user(&SyncUser {
                    user: updated.clone(),
                    now: t1
                })
                .await,
            "sync_user"
        ),
        2,
        "sync_user must count exactly the user's live sessions"
    );
    let r1 = expect_current(
        probe(&store, &a1.token, t1).await,
        "loading a synced session",
    );
    assert_eq!(
        r1.user,
        Some(updated.clone()),
        "sync_user did not update a live session"
    );
    assert_eq!(
        r1.data,
        data(&[("x", "1")]),
        "sync_user changed a session's data"
    );
    let r2 = expect_current(
        probe(&store, &a2.token, t1).await,
        "loading a synced session",
    );
    assert_eq!(
        r2.user,
        Some(updated),
        "sync_user did not update a live session"
    );
    assert_eq!(
        r2.data,
        HashMap::new(),
        "sync_user changed a session's data"
    );
    let rb = expect_current(
        probe(&store, &b1.token, t1).await,
        "loading another user's session",
    );
    assert_eq!(
        rb.user,
        Some(bound(&bob, 1)),
        "sync_user changed another user's session"
    );
    expect_missing(
        load(&store, &gone.token, t1).await,
        "loading a destroyed session after sync_user",
    );
    expect_missing(
        load(&store, &expired.token, t1).await,
        "loading an expired session after sync_user",
    );
    assert_eq!(
        listed_ids(&store, &alice, t1).await,
        vec![a1.id, a2.id],
        "after sync_user the listing must hold the user's 2 live sessions, oldest first"
    );
}

/// An empty label and an empty user id are values like any other, not
/// "none".
pub async fn empty_label_and_user_id_are_kept<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (mut login, token) = login_request("", t0);
    login.session.label = Some(String::new());
    let member = submit(&store, login, token).await;
    let listed = list(&store, "", t0).await;
    assert_eq!(listed.len(), 1, "the session of the user \"\" is listed");
    assert_eq!(listed[0].label.as_deref(), Some(""), "an empty label");
    let record = expect_current(load(&store, &member.token, t0).await, "loading it");
    assert_eq!(
        record.user.map(|u| u.id),
        Some(String::new()),
        "the user \"\" is bound"
    );
}

/// The device a session was started from is listed with it exactly as the
/// login gave it (a user agent of the longest kept length and an IPv6
/// address included), not the device of the anonymous session the login
/// replaced; a session without one lists none. Device and label stay
/// through what rewrites a session's metadata: a refresh, a user sync.
pub async fn devices_are_listed<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("devon");
    let phone = Device::new(
        Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1"),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
    );
    let (mut login, token) = login_request(&user, t0);
    login.session.device = Some(phone.clone());
    login.session.label = Some("phone, 1".to_owned());
    let first = submit(&store, login, token).await;

    let (mut anonymous, _) = anonymous(t0, &[("cart", "[1]")]);
    anonymous.device = Some(Device::new(Some("curl/8.5.0"), None));
    ok(store.create(&anonymous).await, "create");
    let laptop = Device::new(
        Some(&"\u{e9}".repeat(MAX_USER_AGENT)),
        Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
    );
    let (mut login, token) = login_request(&user, t0 + SECOND);
    login.from = Some(anonymous.id.clone());
    login.session.device = Some(laptop.clone());
    let second = submit(&store, login, token).await;

    let (login, token) = login_request(&user, t0 + 2 * SECOND);
    let third = submit(&store, login, token).await;

    let t1 = t0 + 2 * REFRESH;
    expect_current(load(&store, &first.token, t1).await, "refreshing a session");
    ok(
        store
            .sync_user(&SyncUser {
                user: bound(&user, 2),
                now: t1,
            })
            .await,
        "sync_user",
    );

    let devices: Vec<(SessionId, Option<String>, Option<Device>)> = list(&store, &user, t1)
        .await
        .into_iter()
        .map(|info| (info.id, info.label, info.device))
        .collect();
    assert_eq!(
        devices,
        vec![
            (first.id, Some("phone, 1".to_owned()), Some(phone)),
            (second.id, None, Some(laptop)),
            (third.id, None, None)
        ],
        "list_sessions must return each session's device and label as its creation or login gave them"
    );
}
