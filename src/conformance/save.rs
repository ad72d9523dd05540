//! Saving and destroying sessions: deltas, merges, and writes to sessions that ended.

use super::support::*;

#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance_save {
    ($($mode:tt)*) => {
        $crate::__sessionkit_conformance! { @list [$($mode)*]
            save_applies_delta,
            a_save_is_a_use_of_the_session,
            saves_of_different_keys_merge,
            save_after_destroy_changes_nothing,
            save_after_expiry_changes_nothing,
            destroy_ends_session,
            destroy_of_expired_session_is_false,
        }
    };
}

/// A save slides the idle deadline (a write after a silent load, or an
/// empty save: an explicit touch), and keeps the session past its first
/// idle deadline.
pub async fn a_save_is_a_use_of_the_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, token) = create(&store, t0, &[("a", "1")]).await;
    let mid = t0 + IDLE / 2;
    assert!(
        save(&store, &id, &Delta::default(), mid).await,
        "an empty save of a live session returned false, expected true"
    );
    let record = expect_current(
        probe(&store, &token, mid + SECOND).await,
        "a load after a save",
    );
    assert_eq!(
        record.last_seen, mid,
        "an empty save half an idle timeout after creation must slide last_seen to its time"
    );
    let later = mid + IDLE / 2;
    assert!(save(&store, &id, &set(&[("b", "2")]), later).await);
    let record = expect_current(
        probe(&store, &token, t0 + IDLE + IDLE / 2).await,
        "a load one and a half idle timeouts after creation, saved since",
    );
    assert_eq!(
        record.last_seen, later,
        "a save with data must slide last_seen too"
    );
}

/// `save` applies every part of a delta (set, remove, clear, label,
/// idle_timeout) and touches nothing the delta does not name; an empty
/// delta changes nothing.
pub async fn save_applies_delta<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, token) = create(
        &store,
        t0,
        &[("a", "1"), ("b", "2"), ("c", "3"), ("keep", r#""k""#)],
    )
    .await;
    let delta = Delta {
        set: pairs(&[("a", "10"), ("d", "4")]),
        remove: vec!["b".to_owned(), "never-there".to_owned()],
        label: Some("phone".to_owned()),
        ..Delta::default()
    };
    assert!(
        save(&store, &id, &delta, t0 + SECOND).await,
        "a save of a live session returned false, expected true"
    );
    let record = expect_current(
        probe(&store, &token, t0 + 2 * SECOND).await,
        "a load after a save",
    );
    assert_eq!(
        record.data,
        data(&[("a", "10"), ("c", "3"), ("d", "4"), ("keep", r#""k""#)]),
        "after a save setting a and d and removing b: wrong data (keys a delta does not name must be untouched)"
    );
    assert_eq!(
        record.label.as_deref(),
        Some("phone"),
        "the delta's label was not applied"
    );
    assert_eq!(
        record.idle_timeout, IDLE,
        "a delta without idle_timeout changed it"
    );

    assert!(
        save(&store, &id, &Delta::default(), t0 + 3 * SECOND).await,
        "an empty save of a live session returned false, expected true"
    );
    let after = expect_current(
        probe(&store, &token, t0 + 4 * SECOND).await,
        "a load after an empty save",
    );
    assert_eq!(after.data, record.data, "an empty delta changed the data");
    assert_eq!(
        after.label, record.label,
        "a delta without a label changed the label"
    );

    let delta = Delta {
        clear: true,
        set: pairs(&[("x", "true")]),
        ..Delta::default()
    };
    assert!(
        save(&store, &id, &delta, t0 + 5 * SECOND).await,
        "a clearing save returned false, expected true"
    );
    let record = expect_current(
        probe(&store, &token, t0 + 6 * SECOND).await,
        "a load after a clearing save",
    );
    assert_eq!(
        record.data,
        data(&[("x", "true")]),
        "a delta with clear = true and set x must leave exactly x"
    );
    assert_eq!(
        record.label.as_deref(),
        Some("phone"),
        "clear must only clear the data"
    );

    let short = 5 * MINUTE;
    let delta = Delta {
        idle_timeout: Some(short),
        ..Delta::default()
    };
    assert!(
        save(&store, &id, &delta, t0 + 7 * SECOND).await,
        "a save changing the idle timeout returned false, expected true"
    );
    let record = expect_current(
        probe(&store, &token, t0 + 8 * SECOND).await,
        "a load after a save changing the idle timeout",
    );
    assert_eq!(
        record.idle_timeout, short,
        "the delta's idle_timeout was not applied"
    );
    assert_eq!(
        record.data,
        data(&[("x", "true")]),
        "an idle_timeout delta changed the data"
    );
    let deadline = record.last_seen + short;
    expect_current(
        probe(&store, &token, deadline - 1).await,
        "a load 1 ms before the new (shorter) idle deadline",
    );
    expect_missing(
        probe(&store, &token, deadline).await,
        "a load at last_seen + the idle timeout set by a save (the new timeout must be in force)",
    );
}

/// Saves are deltas: two saves changing different keys both survive, and so
/// do 20 concurrent saves of 20 distinct keys.
pub async fn saves_of_different_keys_merge<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, token) = create(&store, t0, &[("a", "0")]).await;
    // Two requests loaded the same session; each changed a different key.
    let one = set(&[("x", "1")]);
    let two = Delta {
        set: pairs(&[("y", "2")]),
        remove: vec!["a".to_owned()],
        ..Delta::default()
    };
    assert!(
        save(&store, &id, &one, t0 + SECOND).await,
        "first save returned false"
    );
    assert!(
        save(&store, &id, &two, t0 + SECOND).await,
        "second save returned false"
    );
    let record = expect_current(
        probe(&store, &token, t0 + 2 * SECOND).await,
        "a load after two saves",
    );
    assert_eq!(
        record.data,
        data(&[("x", "1"), ("y", "2")]),
        "two saves changing different keys must both survive"
    );

    let t1 = t0 + 3 * SECOND;
    let tasks = (0..20)
        .map(|i| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let delta = Delta {
                    set: vec![(format!("k{i}"), i.to_string())],
                    ..Delta::default()
                };
                ok(
                    store
                        .save(&Save {
                            id: id.clone(),
                            delta: delta.clone(),
                            now: t1,
                        })
                        .await,
                    "concurrent save",
                )
            })
        })
        .collect();
    for (i, saved) in join(tasks).await.into_iter().enumerate() {
        assert!(
            saved,
            "concurrent save {i} of a live session returned false"
        );
    }
    let record = expect_current(
        probe(&store, &token, t1 + SECOND).await,
        "a load after 20 concurrent saves",
    );
    let mut expected = data(&[("x", "1"), ("y", "2")]);
    expected.extend((0..20).map(|i| (format!("k{i}"), i.to_string())));
    assert_eq!(
        record.data, expected,
        "20 concurrent saves of distinct keys must all survive"
    );
}

/// `save` on a destroyed session (logged in or anonymous) or on an id that
/// never existed returns `false` and does not bring the session back: its
/// token stays `Missing` and the user's listing stays empty.
pub async fn save_after_destroy_changes_nothing<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("dana");
    let member = log_in(&store, &user, t0).await;
    assert!(
        ok(
            store
                .destroy(&Destroy {
                    id: member.id.clone(),
                    reason: EndReason::LoggedOut,
                    now: t0 + SECOND
                })
                .await,
            "destroy"
        ),
        "destroying a live session returned false"
    );
    let delta = Delta {
        set: pairs(&[("late", "1")]),
        idle_timeout: Some(IDLE),
        label: Some("late".to_owned()),
        ..Delta::default()
    };
    assert!(
        !save(&store, &member.id, &delta, t0 + 2 * SECOND).await,
        "a save on a destroyed logged-in session returned true, expected false"
    );
    expect_missing(
        load(&store, &member.token, t0 + 3 * SECOND).await,
        "loading a destroyed session after a save tried to write to it",
    );
    assert_eq!(
        listed_ids(&store, &user, t0 + 3 * SECOND).await,
        Vec::<SessionId>::new(),
        "a save on a destroyed session put it back in the user's listing"
    );

    let (anon, anon_token) = create(&store, t0 + 4 * SECOND, &[("a", "1")]).await;
    ok(
        store
            .destroy(&Destroy {
                id: anon.clone(),
                reason: EndReason::LoggedOut,
                now: t0 + 4 * SECOND,
            })
            .await,
        "destroy",
    );
    assert!(
        !save(&store, &anon, &delta, t0 + 5 * SECOND).await,
        "a save on a destroyed anonymous session returned true, expected false"
    );
    expect_missing(
        load(&store, &anon_token, t0 + 6 * SECOND).await,
        "loading a destroyed anonymous session after a save tried to write to it",
    );
    let never = SessionId::generate(&Tag::random());
    assert!(
        !save(&store, &never, &delta, t0 + 6 * SECOND).await,
        "a save on an id that never existed returned true, expected false"
    );
}

/// `save` on an expired session returns `false` and does not revive it,
/// even with a delta that sets a longer idle timeout.
pub async fn save_after_expiry_changes_nothing<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("eve");
    let member = log_in(&store, &user, t0).await;
    let dead = t0 + IDLE;
    let delta = Delta {
        set: pairs(&[("late", "1")]),
        idle_timeout: Some(10 * IDLE),
        label: Some("revived?".to_owned()),
        ..Delta::default()
    };
    assert!(
        !save(&store, &member.id, &delta, dead).await,
        "a save at the idle deadline returned true, expected false"
    );
    expect_missing(
        load(&store, &member.token, dead + SECOND).await,
        "loading an expired session after a save tried to write to it",
    );
    assert_eq!(
        listed_ids(&store, &user, dead + SECOND).await,
        Vec::<SessionId>::new(),
        "an expired session is listed after a save tried to write to it"
    );
}

/// `destroy` kills every token (current and grace), removes the session
/// from its user's listing and its connections, returns `true` then
/// `false`, and publishes `SessionEnded` with the reason given.
pub async fn destroy_ends_session<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("dave");
    let member = log_in(&store, &user, t0).await;
    let (anon, _) = create(&store, t0, &[]).await;
    let conn = connection(&member.id, "node-a", t0);
    assert!(
        connect(&store, &conn, t0 + HOUR, t0).await,
        "connect to a live session returned false"
    );
    let t1 = t0 + MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let mut events = store.subscribe();
    let t2 = t1 + SECOND;
    assert!(
        ok(
            store
                .destroy(&Destroy {
                    id: member.id.clone(),
                    reason: EndReason::LoggedOut,
                    now: t2
                })
                .await,
            "destroy"
        ),
        "destroying a live session returned false"
    );
    expect_missing(
        load(&store, &member.token, t2).await,
        "loading a destroyed session's grace token",
    );
    expect_missing(
        load(&store, &new, t2).await,
        "loading a destroyed session's current token",
    );
    assert_eq!(
        listed_ids(&store, &user, t2).await,
        Vec::<SessionId>::new(),
        "a destroyed session is still listed"
    );
    assert_eq!(
        connections(&store, &user, t2).await,
        Vec::<Connection>::new(),
        "a destroyed session's connection is still listed"
    );
    assert!(
        fetch(&store, &member.id, Some(&new), None, t2)
            .await
            .is_none(),
        "fetch of a destroyed session returned Some"
    );
    assert!(
        !ok(
            store
                .destroy(&Destroy {
                    id: member.id.clone(),
                    reason: EndReason::LoggedOut,
                    now: t2
                })
                .await,
            "destroy"
        ),
        "destroying a session a second time returned true"
    );
    expect_events(
        &mut events,
        std::slice::from_ref(&member.id),
        EndReason::LoggedOut,
        "a session destroyed with LoggedOut",
    )
    .await;
    assert!(
        ok(
            store
                .destroy(&Destroy {
                    id: anon.clone(),
                    reason: EndReason::StaleToken,
                    now: t2
                })
                .await,
            "destroy"
        ),
        "destroying a live anonymous session returned false"
    );
    expect_events(
        &mut events,
        &[anon],
        EndReason::StaleToken,
        "a session destroyed with StaleToken",
    )
    .await;
}

/// `destroy` of a session whose deadline passed (but which a store may still
/// hold) returns `false`, like any missing session.
pub async fn destroy_of_expired_session_is_false<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, token) = create(&store, t0, &[("k", "1")]).await;
    assert!(
        !ok(
            store
                .destroy(&Destroy {
                    id: id.clone(),
                    reason: EndReason::LoggedOut,
                    now: t0 + IDLE
                })
                .await,
            "destroy"
        ),
        "destroying a session past its idle deadline returned true"
    );
    expect_missing(
        load(&store, &token, t0 + IDLE).await,
        "loading it afterwards",
    );
}
