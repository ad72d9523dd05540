//! Logging in: the previous session, the delta, the per-user limit and the user tag.

use super::support::*;

#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance_login {
    ($($mode:tt)*) => {
        $crate::__sessionkit_conformance! { @list [$($mode)*]
            login_carries_data_over,
            login_without_previous_session,
            login_applies_delta_settings,
            login_enforces_max_sessions,
            a_limit_of_zero_keeps_the_new_session,
            user_sessions_must_carry_the_user_tag,
        }
    };
}

/// `login` from an anonymous session carries its data over with the delta
/// applied on top, ends it (token `Missing`, a `Replaced` event), and
/// starts a session whose token is `Current`, with the user bound, listed
/// for the user.
pub async fn login_carries_data_over<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("alice");
    let (anon, anon_token) = create(&store, t0, &[("cart", r#"["apple"]"#), ("a", "1")]).await;
    let mut events = store.subscribe();
    let t1 = t0 + MINUTE;
    let (mut login, token) = login_request(&user, t1);
    login.from = Some(anon.clone());
    login.delta = Delta {
        set: pairs(&[("b", "2")]),
        remove: vec!["a".to_owned()],
        ..Delta::default()
    };
    let outcome = ok(store.login(&login).await, "login");
    let expected = data(&[("cart", r#"["apple"]"#), ("b", "2")]);
    assert_eq!(
        outcome.data, expected,
        "LoginOutcome::data must be the previous session's data with the delta applied"
    );
    assert!(
        outcome.evicted.is_empty(),
        "a login without a limit evicted sessions"
    );
    expect_missing(
        load(&store, &anon_token, t1).await,
        "loading the anonymous session's token after login (it must die at once)",
    );
    assert!(
        !save(&store, &anon, &set(&[("late", "1")]), t1).await,
        "a save on the session a login replaced returned true"
    );
    let record = expect_current(
        load(&store, &token, t1).await,
        "loading the token a login started",
    );
    assert_eq!(
        record.id, login.session.id,
        "the login's token resolved to another session"
    );
    assert_eq!(
        record.user,
        Some(bound(&user, 1)),
        "the login did not bind the user"
    );
    assert_eq!(
        record.data, expected,
        "the logged-in session has other data than LoginOutcome::data"
    );
    assert_eq!(
        record.created_at, t1,
        "a logged-in session starts at the login"
    );
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![login.session.id.clone()],
        "the logged-in session must be listed for its user"
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&anon),
        EndReason::Replaced,
        "the anonymous session a login replaced",
    )
    .await;
}

/// `login` without a previous session starts with the delta's data; a
/// login whose previous session is already gone carries nothing over and
/// still succeeds.
pub async fn login_without_previous_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("bob");
    let (mut login, token) = login_request(&user, t0);
    login.delta = set(&[("x", "1")]);
    let outcome = ok(store.login(&login).await, "login");
    assert_eq!(
        outcome.data,
        data(&[("x", "1")]),
        "a login without `from` must start with the delta's data"
    );
    let record = expect_current(
        load(&store, &token, t0).await,
        "loading a fresh login's token",
    );
    assert_eq!(
        record.user,
        Some(bound(&user, 1)),
        "the login did not bind the user"
    );
    assert_eq!(
        record.data,
        data(&[("x", "1")]),
        "the logged-in session has the wrong data"
    );

    let (gone, _) = create(&store, t0, &[("old", "1")]).await;
    ok(
        store
            .destroy(&Destroy {
                id: gone.clone(),
                reason: EndReason::LoggedOut,
                now: t0,
            })
            .await,
        "destroy",
    );
    let t1 = t0 + SECOND;
    let (mut second, second_token) = login_request(&user, t1);
    second.from = Some(gone);
    second.delta = set(&[("y", "2")]);
    let outcome = ok(store.login(&second).await, "login");
    assert_eq!(
        outcome.data,
        data(&[("y", "2")]),
        "a login from a destroyed session must carry nothing over"
    );
    expect_current(
        load(&store, &second_token, t1).await,
        "loading the token of a login whose previous session was gone",
    );
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![login.session.id.clone(), second.session.id.clone()],
        "both logins must be listed, oldest first"
    );
}

/// A login applies its delta's settings (idle timeout, label) to the new
/// session, not only its data.
pub async fn login_applies_delta_settings<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("lena");
    let (mut login, token) = login_request(&user, t0);
    login.delta = Delta {
        idle_timeout: Some(2 * IDLE),
        label: Some("laptop".to_owned()),
        ..Delta::default()
    };
    let member = submit(&store, login, token).await;
    let listed = list(&store, &user, t0).await;
    assert_eq!(listed.len(), 1, "one session listed after the login");
    assert_eq!(
        listed[0].label.as_deref(),
        Some("laptop"),
        "the login's delta label"
    );
    assert_eq!(
        listed[0].idle_deadline,
        t0 + 2 * IDLE,
        "the login's delta idle timeout"
    );
    expect_current(
        probe(&store, &member.token, t0 + IDLE + MINUTE).await,
        "past the default idle timeout, inside the delta's",
    );
}

/// `login` with `max_sessions` revokes the user's oldest sessions (by
/// `created_at`) beyond the limit: returned in `evicted`, tokens dead, no
/// longer listed, a `Revoked` event each.
pub async fn login_enforces_max_sessions<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("carol");
    let s1 = log_in(&store, &user, t0).await;
    let s2 = log_in(&store, &user, t0 + SECOND).await;
    let s3 = log_in(&store, &user, t0 + 2 * SECOND).await;
    let mut events = store.subscribe();
    let t1 = t0 + 3 * SECOND;
    let (mut login, token) = login_request(&user, t1);
    login.max_sessions = Some(2);
    let outcome = ok(store.login(&login).await, "login");
    let evicted: HashSet<SessionId> = outcome.evicted.iter().cloned().collect();
    assert_eq!(
        evicted,
        HashSet::from([s1.id.clone(), s2.id.clone()]),
        "a 4th login with max_sessions = 2 must evict the 2 oldest sessions (got {} ids)",
        outcome.evicted.len()
    );
    assert_eq!(outcome.evicted.len(), 2, "evicted lists a session twice");
    expect_missing(
        load(&store, &s1.token, t1).await,
        "loading the oldest session after it was evicted",
    );
    expect_missing(
        load(&store, &s2.token, t1).await,
        "loading the 2nd oldest session after it was evicted",
    );
    expect_current(
        load(&store, &s3.token, t1).await,
        "loading the session the limit kept",
    );
    expect_current(load(&store, &token, t1).await, "loading the new session");
    assert_eq!(
        listed_ids(&store, &user, t1).await,
        vec![s3.id.clone(), login.session.id.clone()],
        "after the limit: the listing must hold the 2 newest sessions"
    );
    expect_events(
        &mut events,
        &[s1.id, s2.id],
        EndReason::Revoked,
        "sessions evicted by max_sessions",
    )
    .await;

    let (mut fifth, _) = login_request(&user, t1 + SECOND);
    fifth.max_sessions = Some(2);
    let outcome = ok(store.login(&fifth).await, "login");
    assert_eq!(
        outcome.evicted,
        vec![s3.id.clone()],
        "a 5th login with max_sessions = 2 must evict exactly the oldest live session"
    );
    assert_eq!(
        listed_ids(&store, &user, t1 + SECOND).await,
        vec![login.session.id, fifth.session.id],
        "after the second limited login: wrong listing"
    );
}

/// A per-user limit of zero keeps the new session (it is treated as one).
pub async fn a_limit_of_zero_keeps_the_new_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("zoe");
    let first = log_in(&store, &user, t0).await;
    let (mut login, token) = login_request(&user, t0 + SECOND);
    login.max_sessions = Some(0);
    let outcome = ok(store.login(&login).await, "login");
    assert_eq!(
        outcome.evicted,
        vec![first.id],
        "the older session is evicted"
    );
    expect_current(load(&store, &token, t0 + SECOND).await, "the new session");
}

/// A session bound to a user must carry that user's tag (so that a user's
/// sessions and index share a partition); `create` and `login` refuse one
/// that does not, storing nothing.
pub async fn user_sessions_must_carry_the_user_tag<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("tess");
    let (mut new, token) = anonymous(t0, &[]);
    new.user = Some(bound(&user, 1));
    match store.create(&new).await {
        Err(err) => assert_eq!(
            err.kind(),
            StoreErrorKind::Invalid,
            "create of a user's session under a random tag: the caller's mistake, got {err}"
        ),
        Ok(()) => panic!("create of a user's session under a random tag must fail"),
    }
    expect_missing(
        load(&store, &token, t0).await,
        "loading the refused session",
    );
    let (mut login, token) = login_request(&user, t0);
    login.session.id = SessionId::generate(&Tag::random());
    match store.login(&login).await {
        Err(err) => assert_eq!(
            err.kind(),
            StoreErrorKind::Invalid,
            "login of a session under a random tag: the caller's mistake, got {err}"
        ),
        Ok(_) => panic!("login of a session under a random tag must fail"),
    }
    expect_missing(load(&store, &token, t0).await, "loading the refused login");
    assert!(list(&store, &user, t0).await.is_empty(), "nothing listed");
}
