//! Creating and loading sessions: the idle and absolute deadlines, unknown and stale tokens.

use super::support::*;

#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance_load {
    ($($mode:tt)*) => {
        $crate::__sessionkit_conformance! { @list [$($mode)*]
            create_and_load,
            load_unknown_token,
            load_slides_idle_deadline,
            idle_deadline_expires,
            absolute_deadline_expires,
            longest_timeouts_stay_exact,
            stale_token_leaves_session_live,
        }
    };
}

/// `create`, then `load` of its token: `Found { Current }` with exactly the
/// record created (id, times, TTG, deadlines, label, data, no user).
pub async fn create_and_load<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let token = Token::generate(&SessionId::generate(&Tag::random()));
    let new = NewSession {
        device: None,
        id: token.session_id(),
        token: token.digest(),
        now: t0,
        idle_timeout: IDLE,
        absolute_deadline: Some(t0 + 8 * HOUR),
        user: None,
        label: Some("firefox on linux".to_owned()),
        data: pairs(&[("cart", r#"["apple","pear"]"#), ("visits", "1")]),
    };
    ok(store.create(&new).await, "create");
    let expected = SessionRecord {
        id: new.id.clone(),
        created_at: t0,
        last_seen: t0,
        idle_timeout: IDLE,
        absolute_deadline: Some(t0 + 8 * HOUR),
        ttg: t0,
        rotated_at: None,
        renew_token: false,
        user: None,
        label: Some("firefox on linux".to_owned()),
        data: data(&[("cart", r#"["apple","pear"]"#), ("visits", "1")]),
    };
    let record = expect_current(
        load(&store, &token, t0).await,
        "loading a new session by its first token",
    );
    assert_eq!(
        record, expected,
        "loading a new session by its first token: the record differs from what was created"
    );
    let record = expect_current(
        load(&store, &token, t0 + SECOND).await,
        "loading a new session again a second later",
    );
    assert_eq!(
        record, expected,
        "loading a new session again a second later (no refresh due): the record changed"
    );
}

/// `load` of a token no session has is `Missing`, also for a token that
/// shares the routing tag of a live session; such lookups create nothing.
pub async fn load_unknown_token<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let stranger = Token::generate(&SessionId::generate(&Tag::random()));
    expect_missing(
        load(&store, &stranger, t0).await,
        "loading a token no session was created with",
    );
    let (id, token) = create(&store, t0, &[("k", "1")]).await;
    let sibling = Token::generate(&token.session_id());
    expect_missing(
        load(&store, &sibling, t0 + SECOND).await,
        "loading an unknown token with the routing tag of a live session",
    );
    let record = expect_current(
        load(&store, &token, t0 + 2 * SECOND).await,
        "loading the live session after unknown tokens were looked up",
    );
    assert_eq!(
        record.id, id,
        "the live session's token resolved to another session"
    );
    expect_missing(
        load(&store, &stranger, t0 + 3 * SECOND).await,
        "loading the unknown token a second time (a lookup must not create anything)",
    );
}

/// `load` slides `last_seen` to `now` only once `now - last_seen >=
/// refresh_after`, returns the refreshed record, and the idle deadline
/// (`last_seen + idle_timeout`) follows the slide.
pub async fn load_slides_idle_deadline<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (_, token) = create(&store, t0, &[]).await;
    let record = expect_current(
        load(&store, &token, t0 + REFRESH - 1).await,
        "a load refresh_after - 1 ms after creation",
    );
    assert_eq!(
        record.last_seen, t0,
        "a load {} ms after the last refresh, with refresh_after = {REFRESH} ms, must not slide last_seen",
        REFRESH - 1
    );
    let t1 = t0 + REFRESH;
    let record = expect_current(
        load(&store, &token, t1).await,
        "a load refresh_after after creation",
    );
    assert_eq!(
        record.last_seen, t1,
        "a load refresh_after after the last refresh must slide last_seen to now, \
         and return the refreshed record"
    );
    let record = expect_current(
        probe(&store, &token, t1 + IDLE - 1).await,
        "a load 1 ms before the slid idle deadline (after the original one)",
    );
    assert_eq!(
        record.last_seen, t1,
        "the slide of last_seen was not stored"
    );
    expect_missing(
        probe(&store, &token, t1 + IDLE).await,
        "a load at the slid idle deadline (last_seen + idle_timeout)",
    );
}

/// A session unused until its idle deadline (`last_seen + idle_timeout`)
/// is `Missing` from that moment, and a load does not revive it.
pub async fn idle_deadline_expires<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (_, token) = create(&store, t0, &[("a", "1")]).await;
    let record = expect_current(
        probe(&store, &token, t0 + IDLE - 1).await,
        "a load 1 ms before the idle deadline",
    );
    assert_eq!(
        record.last_seen, t0,
        "a load with refresh_after = 100 years must not slide last_seen"
    );
    expect_missing(
        load(&store, &token, t0 + IDLE).await,
        "a load at the idle deadline (last_seen + idle_timeout)",
    );
    expect_missing(
        load(&store, &token, t0 + IDLE + MINUTE).await,
        "a load a minute after the idle deadline (the expired load must not have revived it)",
    );
}

/// A session kept busy (its idle deadline sliding) is `Missing` from its
/// absolute deadline on, and cannot be saved then.
pub async fn absolute_deadline_expires<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let absolute = t0 + 10 * MINUTE;
    let (new, token) = anonymous(t0, &[("a", "1")]);
    let id = new.id.clone();
    ok(
        store
            .create(&NewSession {
                device: None,
                absolute_deadline: Some(absolute),
                ..new
            })
            .await,
        "create",
    );
    let mut t = t0;
    while t + 2 * MINUTE < absolute {
        t += 2 * MINUTE;
        let record = expect_current(
            load(&store, &token, t).await,
            "a load of a busy session before its absolute deadline",
        );
        assert_eq!(record.last_seen, t, "a due load did not slide last_seen");
        assert_eq!(
            record.absolute_deadline,
            Some(absolute),
            "a load changed the absolute deadline"
        );
    }
    expect_current(
        load(&store, &token, absolute - 1).await,
        "a load 1 ms before the absolute deadline",
    );
    expect_missing(
        load(&store, &token, absolute).await,
        "a load at the absolute deadline of a session used a moment ago",
    );
    assert!(
        !save(&store, &id, &set(&[("b", "2")]), absolute).await,
        "a save at the absolute deadline returned true, expected false"
    );
}

/// The longest timeouts the layer accepts ([`MAX_DURATION`](crate::MAX_DURATION))
/// work like any other: stored exactly, deadlines computed exactly.
pub async fn longest_timeouts_stay_exact<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let longest = crate::clock::ms(crate::MAX_DURATION);
    let (mut new, token) = anonymous(t0, &[("k", "1")]);
    new.idle_timeout = longest;
    new.absolute_deadline = Some(t0 + longest);
    ok(store.create(&new).await, "create");
    let record = expect_current(
        probe(&store, &token, t0 + longest - 1).await,
        "loading just before the longest idle deadline",
    );
    assert_eq!(record.idle_timeout, longest, "the idle timeout read back");
    assert_eq!(
        record.absolute_deadline,
        Some(t0 + longest),
        "the absolute deadline read back"
    );
    assert!(
        save(&store, &new.id, &set(&[("k", "2")]), t0 + 1).await,
        "a save on a session with the longest timeouts"
    );
    expect_missing(
        probe(&store, &token, t0 + longest).await,
        "loading at the longest idle deadline",
    );
}

/// Reuse of a replaced token: `Grace` throughout OJS (never `Stale` early),
/// `Stale(id)` from then on, repeatably, while the session stays fully live
/// for its new token (load, save, listing, fetch); destroying it with
/// `StaleToken` (the layer's revoke policy) ends it and publishes that
/// reason.
pub async fn stale_token_leaves_session_live<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("tom");
    let (mut login, token) = login_request(&user, t0);
    login.delta = set(&[("a", "1")]);
    let member = submit(&store, login, token).await;
    let old = &member.token;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &member.id, old, t1, "rotating").await;
    expect_current(
        load(&store, &new, t1 + SECOND).await,
        "adopting the replacement",
    );
    expect_grace(
        load(&store, old, t1 + MINUTE).await,
        "loading the old token a minute into OJS (it must not be Stale yet)",
    );
    expect_grace(
        probe(&store, old, t1 + OJS - 1).await,
        "loading the old token 1 ms before OJS ends (it must not be Stale yet)",
    );
    let stale = expect_stale(
        load(&store, old, t1 + OJS).await,
        "loading the old token when OJS ended",
    );
    assert_eq!(stale, member.id, "Stale carries another session's id");
    let t2 = t1 + OJS + MINUTE;
    let stale = expect_stale(load(&store, old, t2).await, "loading the stale token again");
    assert_eq!(stale, member.id, "Stale carries another session's id");
    let record = expect_current(
        load(&store, &new, t2).await,
        "loading the new token after the old one was reported stale",
    );
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "a stale lookup changed the session's data"
    );
    assert!(
        save(&store, &member.id, &set(&[("b", "2")]), t2).await,
        "a save after a stale lookup returned false (the session must stay live)"
    );
    assert_eq!(
        listed_ids(&store, &user, t2).await,
        vec![member.id.clone()],
        "a session is no longer listed after a stale lookup"
    );
    assert!(
        fetch(&store, &member.id, Some(&new), None, t2)
            .await
            .is_some(),
        "fetch of a session after a stale lookup returned None"
    );
    let mut events = store.subscribe();
    assert!(
        ok(
            store
                .destroy(&Destroy {
                    id: stale.clone(),
                    reason: EndReason::StaleToken,
                    now: t2
                })
                .await,
            "destroy"
        ),
        "destroying the session a stale token named returned false"
    );
    expect_missing(
        load(&store, old, t2).await,
        "loading the stale token after its session was destroyed",
    );
    expect_missing(
        load(&store, &new, t2).await,
        "loading the new token after its session was destroyed",
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&member.id),
        EndReason::StaleToken,
        "a session destroyed for a stale token",
    )
    .await;
}
