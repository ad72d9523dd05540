//! Rotating and regenerating tokens: the grace window, single flight, and replacements a client holds or lost.

use super::support::*;

#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance_rotate {
    ($($mode:tt)*) => {
        $crate::__sessionkit_conformance! { @list [$($mode)*]
            rotate_installs_replacement,
            grace_token_gets_sealed_replacement,
            old_token_is_stale_after_grace,
            rotate_is_single_flight,
            unadopted_replacement_outlives_any_pause,
            handing_out_replacement_extends_resend,
            lapsed_replacement_is_replaced,
            abandoned_rotation_ends_at_the_idle_deadline,
            regenerate_replaces_every_token,
        }
    };
}

/// `rotate` of the current token installs the candidate: it loads as
/// `Current` (adopted, so it no longer lapses) with the same session id and
/// data, TTG and `rotated_at` = the rotation's `now`.
pub async fn rotate_installs_replacement<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    let record = expect_current(
        load(&store, &new, t1).await,
        "loading the replacement right after it was installed",
    );
    assert_eq!(record.id, id, "a rotation changed the session id");
    assert_eq!(
        record.ttg, t1,
        "the replacement's TTG must be the rotation's now"
    );
    assert_eq!(
        record.rotated_at,
        Some(t1),
        "rotated_at must be the rotation's now"
    );
    assert_eq!(record.created_at, t0, "a rotation changed created_at");
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "a rotation changed the data"
    );
    expect_current(
        load(&store, &new, t1 + CIJS + MINUTE).await,
        "loading the replacement after CIJS, when it was adopted at once (an adopted token does not lapse)",
    );
}

/// Inside OJS, while the replacement is unadopted, the old token loads as
/// `Replaced { sealed }`, `sealed` opening (with the old token) to the
/// replacement, with the same session id and data; writes made through
/// either token are seen through the other. Once the replacement was
/// presented, the old token loads as `Superseded`: the sealed copy is gone.
pub async fn grace_token_gets_sealed_replacement<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    let record = expect_replacement(
        load(&store, &old, t1 + SECOND).await,
        &old,
        &new,
        "loading the old token 1 s after the rotation (inside OJS)",
    );
    assert_eq!(
        record.id, id,
        "the old token resolved to another session id"
    );
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "the old token shows other data"
    );
    assert!(
        save(
            &store,
            &record.id,
            &set(&[("from_old", "1")]),
            t1 + 2 * SECOND
        )
        .await,
        "a save through the old token's session returned false"
    );
    let record = expect_current(
        load(&store, &new, t1 + 3 * SECOND).await,
        "loading the replacement after a write through the old token",
    );
    assert_eq!(
        record.data,
        data(&[("a", "1"), ("from_old", "1")]),
        "a write through the old token is not visible through the new one"
    );
    assert!(
        save(
            &store,
            &record.id,
            &set(&[("from_new", "2")]),
            t1 + 4 * SECOND
        )
        .await,
        "a save through the new token's session returned false"
    );
    let record = expect_superseded(
        load(&store, &old, t1 + 5 * SECOND).await,
        "loading the old token again inside OJS, after the replacement was presented",
    );
    assert_eq!(
        record.data,
        data(&[("a", "1"), ("from_old", "1"), ("from_new", "2")]),
        "a write through the new token is not visible through the old one"
    );
}

/// Once OJS has passed since the rotation, the old token loads as
/// `Stale(id)` (1 ms before: still a grace load), the replacement still
/// works, and a rotation with the stale token installs nothing (`Gone`).
pub async fn old_token_is_stale_after_grace<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    expect_current(
        load(&store, &new, t1 + SECOND).await,
        "loading the replacement (adopting it)",
    );
    expect_superseded(
        probe(&store, &old, t1 + OJS - 1).await,
        "loading the old token 1 ms before OJS ends, its replacement presented",
    );
    let stale = expect_stale(
        load(&store, &old, t1 + OJS).await,
        "loading the old token when OJS has passed since the rotation",
    );
    assert_eq!(stale, id, "Stale carries another session's id");
    expect_current(
        load(&store, &new, t1 + OJS + SECOND).await,
        "loading the replacement after the old token's grace ended",
    );
    let (late, candidate) = rotation(&id, &old, t1 + OJS + 2 * SECOND);
    let rotated = ok(store.rotate(&late).await, "rotate");
    assert_eq!(
        rotated,
        Rotated::Gone,
        "rotating with a token whose grace ended must install nothing"
    );
    expect_missing(
        load(&store, &candidate, t1 + OJS + 3 * SECOND).await,
        "loading the candidate of a rotation with a stale token",
    );
}

/// Single flight: 50 concurrent `rotate` calls with the same old token and
/// different candidates give exactly one `Installed`; every other call gets
/// `Existing(sealed)` opening to the winner, the losing candidates never
/// work, and a later rotation or grace load hands out the winner too.
pub async fn rotate_is_single_flight<S: SessionStore + Clone>(store: S) {
    const RACERS: usize = 50;
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let tasks = (0..RACERS)
        .map(|_| {
            let store = store.clone();
            let (rotation, candidate) = rotation(&id, &old, t1);
            tokio::spawn(async move {
                let rotated = ok(store.rotate(&rotation).await, "concurrent rotate");
                (candidate, rotated)
            })
        })
        .collect();
    let results = join(tasks).await;
    let installed: Vec<&Token> = results
        .iter()
        .filter(|(_, r)| *r == Rotated::Installed)
        .map(|(c, _)| c)
        .collect();
    let gone = results.iter().filter(|(_, r)| *r == Rotated::Gone).count();
    assert!(
        installed.len() == 1 && gone == 0,
        "{RACERS} concurrent rotations of one token: expected exactly 1 Installed and {} Existing, \
         got {} Installed, {gone} Gone and {} Existing",
        RACERS - 1,
        installed.len(),
        RACERS - installed.len() - gone
    );
    let winner = installed[0].clone();
    for (candidate, rotated) in &results {
        if let Rotated::Existing(sealed) = rotated {
            opens_to(
                &old,
                sealed,
                &winner,
                "a concurrent rotation that lost the race (Existing)",
            );
        }
        if candidate != &winner {
            expect_missing(
                load(&store, candidate, t1 + SECOND).await,
                "loading the candidate of a rotation that lost the race",
            );
        }
    }
    let (late, _) = rotation(&id, &old, t1 + 2 * SECOND);
    match ok(store.rotate(&late).await, "rotate") {
        Rotated::Existing(sealed) => opens_to(
            &old,
            &sealed,
            &winner,
            "a later rotation of the old token inside OJS",
        ),
        other => panic!(
            "a later rotation of the old token inside OJS: expected Existing(sealed), got {other:?}"
        ),
    }
    expect_replacement(
        load(&store, &old, t1 + 3 * SECOND).await,
        &old,
        &winner,
        "loading the old token after the race",
    );
    let record = expect_current(
        load(&store, &winner, t1 + 4 * SECOND).await,
        "loading the winning replacement",
    );
    assert_eq!(record.id, id, "the winner resolved to another session");
}

/// A replacement its client never presented keeps working however long the
/// client pauses, past CIJS and past OJS: only the session's idle deadline
/// ends it. Presented then, it loads as `Current` with the session's data.
pub async fn unadopted_replacement_outlives_any_pause<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    // The idle deadline counts from the last load (t0): the rotation itself
    // is not a request of the client.
    let late = t0 + IDLE - 1;
    assert!(
        late > t1 + OJS + CIJS,
        "the check's settings are inconsistent"
    );
    let record = expect_current(
        load(&store, &new, late).await,
        "presenting an unadopted replacement after a pause longer than OJS and CIJS, \
         inside the idle timeout",
    );
    assert_eq!(record.id, id, "the replacement resolved to another session");
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "the replacement shows other data"
    );
    expect_current(
        load(&store, &new, late + IDLE - 1).await,
        "presenting the replacement again, 1 ms before the idle deadline its first load set",
    );
}

/// Inside OJS, the old token gets the unadopted replacement again until
/// CIJS after it was last handed out: a grace load hands it out, and so
/// does a `rotate` answered with `Existing`. From CIJS after the last
/// hand-out, the old token loads as `Lapsed` (the caller mints a fresh
/// replacement), while the replacement itself still works.
pub async fn handing_out_replacement_extends_resend<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (a, old_a) = create(&store, t0, &[]).await;
    let (b, old_b) = create(&store, t0, &[]).await;
    let (c, old_c) = create(&store, t0, &[]).await;
    let t1 = t0 + 5 * MINUTE;
    let new_a = rotate_installed(&store, &a, &old_a, t1, "rotating session A").await;
    let new_b = rotate_installed(&store, &b, &old_b, t1, "rotating session B").await;
    let new_c = rotate_installed(&store, &c, &old_c, t1, "rotating session C").await;
    let half = CIJS / 2;
    expect_replacement(
        load(&store, &old_b, t1 + half).await,
        &old_b,
        &new_b,
        "a grace load of B's old token half way through CIJS",
    );
    expect_replacement(
        load(&store, &old_a, t1 + CIJS - 1).await,
        &old_a,
        &new_a,
        "a grace load of A's old token 1 ms before CIJS ends",
    );
    let (again, _) = rotation(&c, &old_c, t1 + CIJS - 1);
    match ok(store.rotate(&again).await, "rotate") {
        Rotated::Existing(sealed) => opens_to(
            &old_c,
            &sealed,
            &new_c,
            "a second rotation of C's old token 1 ms before CIJS ends",
        ),
        other => panic!(
            "a second rotation of C's old token inside OJS: expected Existing(sealed), got {other:?}"
        ),
    }
    expect_lapsed(
        load(&store, &old_b, t1 + half + CIJS).await,
        "a grace load of B's old token CIJS after it was last handed its replacement",
    );
    expect_replacement(
        load(&store, &old_a, t1 + 2 * CIJS - 2).await,
        &old_a,
        &new_a,
        "a grace load of A's old token 1 ms before CIJS after the last hand-out \
         (a grace load must extend the resend window)",
    );
    expect_replacement(
        load(&store, &old_c, t1 + 2 * CIJS - 2).await,
        &old_c,
        &new_c,
        "a grace load of C's old token 1 ms before CIJS after a rotate answered Existing \
         (handing it out again must extend the resend window)",
    );
    expect_current(
        load(&store, &new_b, t1 + half + CIJS + SECOND).await,
        "presenting B's replacement after the old token stopped getting it",
    );
}

/// After a replacement lapsed, a `rotate` of the old token (inside OJS)
/// installs a fresh candidate: the grace load hands out the fresh one, the
/// lapsed one never works again (not even as a rotation's old token), and
/// the old token's grace still ends OJS after the *first* rotation.
pub async fn lapsed_replacement_is_replaced<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1")]).await;
    let t1 = t0 + 5 * MINUTE;
    let lapsed = rotate_installed(&store, &id, &old, t1, "rotating the current token").await;
    let t2 = t1 + CIJS;
    expect_lapsed(
        load(&store, &old, t2).await,
        "loading the old token CIJS after its replacement was handed out, unpresented",
    );
    let fresh = rotate_installed(
        &store,
        &id,
        &old,
        t2,
        "rotating the old token inside OJS after its replacement lapsed",
    )
    .await;
    expect_missing(
        load(&store, &lapsed, t2 + SECOND).await,
        "presenting the lapsed replacement after a fresh one was installed",
    );
    expect_replacement(
        load(&store, &old, t2 + 2 * SECOND).await,
        &old,
        &fresh,
        "a grace load of the old token after a fresh replacement was installed",
    );
    let record = expect_current(
        load(&store, &fresh, t2 + 3 * SECOND).await,
        "presenting the fresh replacement",
    );
    assert_eq!(
        record.id, id,
        "the fresh replacement resolved to another session"
    );
    assert_eq!(
        record.data,
        data(&[("a", "1")]),
        "the fresh replacement shows other data"
    );
    assert_eq!(
        record.ttg, t2,
        "the fresh replacement's TTG must be its rotation's now"
    );
    expect_missing(
        load(&store, &lapsed, t2 + 4 * SECOND).await,
        "presenting the lapsed replacement after the fresh one was adopted",
    );
    let (from_lapsed, _) = rotation(&id, &lapsed, t2 + 5 * SECOND);
    assert_eq!(
        ok(store.rotate(&from_lapsed).await, "rotate"),
        Rotated::Gone,
        "rotating with a lapsed replacement as the old token must install nothing"
    );
    expect_stale(
        load(&store, &old, t1 + OJS).await,
        "loading the old token OJS after the first rotation (minting a fresh replacement must not extend its grace)",
    );
}

/// A rotation nobody follows up (the replacement never presented, the old
/// token unused) leaves the session live until its idle deadline: listed
/// and fetchable after OJS. At the idle deadline no token resolves
/// (`Missing`, not `Stale`), it is not listed, and it cannot be saved or
/// fetched.
pub async fn abandoned_rotation_ends_at_the_idle_deadline<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let user = unique_user("erin");
    let member = log_in(&store, &user, t0).await;
    let t1 = t0 + 5 * MINUTE;
    let new = rotate_installed(&store, &member.id, &member.token, t1, "rotating").await;
    let after = t1 + OJS.max(CIJS);
    assert_eq!(
        listed_ids(&store, &user, after).await,
        vec![member.id.clone()],
        "a session whose replacement is unadopted must stay listed after OJS"
    );
    assert!(
        fetch(&store, &member.id, None, None, after).await.is_some(),
        "fetch of a session whose replacement is unadopted returned None after OJS"
    );
    // The fetch refreshed the session: its idle deadline counts from then.
    let end = after + IDLE;
    expect_missing(
        load(&store, &member.token, end).await,
        "loading the old token at the idle deadline",
    );
    expect_missing(
        load(&store, &new, end).await,
        "loading the unadopted replacement at the idle deadline",
    );
    assert_eq!(
        listed_ids(&store, &user, end).await,
        Vec::<SessionId>::new(),
        "a session past its idle deadline is still listed"
    );
    assert!(
        !save(&store, &member.id, &set(&[("a", "1")]), end).await,
        "a save on a session past its idle deadline returned true"
    );
    assert!(
        fetch(&store, &member.id, None, None, end).await.is_none(),
        "fetch of a session past its idle deadline returned Some"
    );
}

/// `regenerate` kills every token at once (current and grace: `Missing`),
/// makes the new token current and adopted with TTG = now, and applies the
/// delta; on a destroyed or expired session it returns `false` and the new
/// token does not work.
pub async fn regenerate_replaces_every_token<S: SessionStore + Clone>(store: S) {
    let t0 = start();
    let (id, old) = create(&store, t0, &[("a", "1"), ("keep", "2")]).await;
    let (expiring, expiring_token) = create(&store, t0, &[]).await;
    let t1 = t0 + 5 * MINUTE;
    let rotated = rotate_installed(&store, &id, &old, t1, "rotating before regenerate").await;
    let t2 = t1 + SECOND;
    let new = Token::generate(&id);
    let delta = Delta {
        set: pairs(&[("b", "3")]),
        remove: vec!["a".to_owned()],
        label: Some("admin".to_owned()),
        ..Delta::default()
    };
    assert!(
        ok(
            store
                .regenerate(&Regenerate {
                    id: id.clone(),
                    token: new.digest(),
                    delta: delta.clone(),
                    now: t2
                })
                .await,
            "regenerate"
        ),
        "regenerate of a live session returned false"
    );
    expect_missing(
        load(&store, &old, t2).await,
        "loading the grace token right after regenerate (no grace window)",
    );
    expect_missing(
        load(&store, &rotated, t2).await,
        "loading the previous current token right after regenerate",
    );
    // Not presented before CIJS: a regenerated token must not lapse.
    let record = expect_current(
        load(&store, &new, t2 + CIJS + MINUTE).await,
        "loading the regenerated token (first presented after CIJS)",
    );
    assert_eq!(record.id, id, "regenerate changed the session id");
    assert_eq!(
        record.data,
        data(&[("keep", "2"), ("b", "3")]),
        "regenerate did not apply its delta"
    );
    assert_eq!(
        record.label.as_deref(),
        Some("admin"),
        "regenerate did not apply the label"
    );
    assert_eq!(
        record.ttg, t2,
        "the regenerated token's TTG must be regenerate's now"
    );

    let t3 = t2 + CIJS + 2 * MINUTE;
    ok(
        store
            .destroy(&Destroy {
                id: id.clone(),
                reason: EndReason::LoggedOut,
                now: t3,
            })
            .await,
        "destroy",
    );
    let after_destroy = Token::generate(&id);
    assert!(
        !ok(
            store
                .regenerate(&Regenerate {
                    id: id.clone(),
                    token: after_destroy.digest(),
                    delta: Delta::default(),
                    now: t3
                })
                .await,
            "regenerate"
        ),
        "regenerate of a destroyed session returned true"
    );
    expect_missing(
        load(&store, &after_destroy, t3 + SECOND).await,
        "loading the token of a regenerate that returned false (destroyed session)",
    );

    let dead = t0 + IDLE;
    let after_expiry = Token::generate(&expiring);
    assert!(
        !ok(
            store
                .regenerate(&Regenerate {
                    id: expiring.clone(),
                    token: after_expiry.digest(),
                    delta: set(&[("a", "1")]),
                    now: dead
                })
                .await,
            "regenerate"
        ),
        "regenerate of an expired session returned true"
    );
    expect_missing(
        load(&store, &after_expiry, dead).await,
        "loading the token of a regenerate that returned false (expired session)",
    );
    expect_missing(
        load(&store, &expiring_token, dead).await,
        "loading an expired session after a regenerate tried to revive it",
    );
}
