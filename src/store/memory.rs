//! [`MemoryStore`]: the embedded store, for one process.
//!
//! State is split into shards by routing tag, the way Redis Cluster splits it
//! into slots: a session, its tokens and (for a logged-in session) its user's
//! index and sibling sessions share a shard, so every operation but a login
//! that changes tag holds exactly one lock, once. Locks are never held across
//! an `.await`.
//!
//! Expiry does not scan: each shard keeps a min-heap of `(deadline, id)`.
//! Each session remembers the deadline its heap entry was pushed for
//! (`scheduled`). When an entry comes due and the session's real deadline has
//! moved later (it was used since), it is pushed again at the new deadline;
//! when a change moves the deadline earlier (a shorter idle timeout), a new
//! entry is pushed at once and the old one is recognised as stale when
//! popped. Stale entries are counted, and the heap is rebuilt from the
//! sessions once they outnumber the live ones, so it holds at most about two
//! entries per session whatever the workload. A background task pops what is
//! due once a second, and writes pop a little too, so memory returns whether
//! or not a runtime runs the task.
//!
//! The token rules are [`tokens`](super::tokens)'; this store only keeps
//! each session's [`TokenSlots`] and the digest → session map in step.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::tokens::{Resolution, TokenSlots};
use super::*;
use crate::clock::{Clock, Millis, SystemClock};
use crate::token::{SessionId, Tag};

const SHARDS: usize = 16;
const REAP_EVERY: Duration = Duration::from_secs(1);
/// Expired sessions a write removes on its way, so a store with no
/// background task still returns memory.
const REAP_ON_WRITE: usize = 2;
/// How many sessions of one user a chunked operation (revoking all,
/// updating the user) handles per lock: a user with a huge index never
/// holds a shard for long.
const CHUNK: usize = 256;
/// How many expiry-heap entries one creation in a full shard looks at for
/// an anonymous session to evict, so a shard full of logged-in sessions
/// costs a bounded amount of work per refused creation.
const EVICT_SCAN: usize = 64;

/// An in-memory [`SessionStore`]: the default, with nothing to set up.
///
/// Sessions live as long as the process. Clones share the same sessions.
///
/// ```
/// use sessionkit::{MemoryStore, SessionLayer};
/// let layer = SessionLayer::builder(MemoryStore::new()).build();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    events: broadcast::Sender<SessionEnded>,
    clock: Arc<dyn Clock>,
    /// The capacity bound of each shard, if any (see
    /// [`MemoryStoreBuilder::max_sessions`]).
    shard_capacity: Option<usize>,
}

#[derive(Default)]
struct Shard {
    tokens: HashMap<String, SessionId>,
    sessions: HashMap<SessionId, Entry>,
    users: HashMap<String, BTreeSet<SessionId>>,
    expiry: BinaryHeap<Reverse<(Millis, SessionId)>>,
    /// Heap entries superseded by an earlier one, not popped yet.
    stale_entries: usize,
}

struct Entry {
    record: SessionRecord,
    /// Kept beside the record: only listings show it.
    device: Option<crate::device::Device>,
    tokens: TokenSlots,
    connections: HashMap<String, (Connection, Millis)>,
    /// The deadline of this session's authoritative heap entry.
    scheduled: Millis,
}

/// What [`Shard::pop_expiry`] took off the heap.
enum Popped {
    /// The heap is empty.
    Empty,
    /// An entry that no longer stands for its session's deadline.
    Skipped,
    /// A session due at this time.
    Due(Millis, SessionId),
}

impl Entry {
    fn info(&self) -> SessionInfo {
        SessionInfo {
            device: self.device.clone(),
            ..(&self.record).into()
        }
    }

    fn is_live(&self, now: Millis) -> bool {
        now < self.record.deadline()
    }

    fn touch(&mut self, now: Millis, refresh_after: Option<Millis>) {
        if refresh_after.is_some_and(|after| self.record.refresh_due(now, after)) {
            self.record.last_seen = now;
        }
    }

    fn apply(&mut self, delta: &Delta) {
        delta.apply_to(&mut self.record.data);
        if let Some(idle) = delta.idle_timeout {
            self.record.idle_timeout = idle;
        }
        if let Some(label) = &delta.label {
            self.record.label = Some(label.clone());
        }
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }

    /// An empty store whose background expiry uses `clock` (give it the
    /// clock the layer uses).
    pub fn with_clock(clock: impl Clock) -> Self {
        Self::builder().clock(clock).build()
    }

    /// A builder, for a store with a capacity bound
    /// ([`MemoryStoreBuilder::max_sessions`]) or another clock.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: Arc::new(SystemClock),
            max_sessions: None,
        }
    }

    /// Removes every session whose deadline passed. The background task does
    /// this every second; call it yourself when no Tokio runtime runs.
    pub fn purge_expired(&self) {
        self.inner.purge(usize::MAX);
    }

    /// The number of sessions held, live or not yet purged.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| lock(s).sessions.len())
            .sum()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many tokens, user index entries and connections the store holds:
    /// with [`len`](Self::len), everything that must return to zero once all
    /// sessions have ended.
    pub fn footprint(&self) -> (usize, usize, usize) {
        self.inner.shards.iter().fold((0, 0, 0), |(t, u, c), s| {
            let s = lock(s);
            (
                t + s.tokens.len(),
                u + s.users.values().map(BTreeSet::len).sum::<usize>(),
                c + s
                    .sessions
                    .values()
                    .map(|e| e.connections.len())
                    .sum::<usize>(),
            )
        })
    }
}

/// Builds a [`MemoryStore`]: `MemoryStore::builder().max_sessions(n).build()`.
#[derive(Clone)]
pub struct MemoryStoreBuilder {
    clock: Arc<dyn Clock>,
    max_sessions: Option<usize>,
}

impl MemoryStoreBuilder {
    /// The clock the background expiry uses (give it the clock the layer
    /// uses). Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Bounds the number of sessions the store holds, so that a client
    /// looping on a cookieless write (each creates a session) cannot exhaust
    /// memory. Default: no bound.
    ///
    /// The policy, applied when a session is created and the store is full:
    ///
    /// 1. expired sessions are removed first;
    /// 2. then the **anonymous** session nearest its deadline is evicted
    ///    (with the default idle timeout, the least recently used one). It
    ///    ends with [`EndReason::Expired`], as it would have later. A
    ///    flood therefore churns through anonymous sessions, its own first,
    ///    while logged-in sessions and sessions holding a live connection are
    ///    never evicted;
    /// 3. if no anonymous session can be evicted (the store is full of
    ///    logged-in or connected sessions), creating an anonymous session
    ///    fails with a [`StoreError`] (the request answers 503) and nothing
    ///    is stored. A **login** is still admitted: it replaces the session
    ///    it was made from, and logged-in sessions are bounded by the number
    ///    of users times `max_sessions_per_user`.
    ///
    /// The bound is kept per shard (the store has 16, chosen by the random
    /// routing tag, so they fill evenly): each holds up to `n / 16`, rounded
    /// up, so the store as a whole holds at most `n` rounded up to a multiple
    /// of 16. `None` removes the bound; `Some(0)` is taken as `Some(1)`.
    pub fn max_sessions(mut self, n: impl Into<Option<usize>>) -> Self {
        self.max_sessions = n.into();
        self
    }

    /// The store. Its background expiry task starts when it is built inside
    /// a Tokio runtime.
    pub fn build(self) -> MemoryStore {
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            events,
            clock: self.clock,
            shard_capacity: self.max_sessions.map(|n| n.max(1).div_ceil(SHARDS)),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap_forever(Arc::downgrade(&inner)));
        }
        MemoryStore { inner }
    }
}

impl std::fmt::Debug for MemoryStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.len())
            .finish()
    }
}

async fn reap_forever(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match inner.upgrade() {
            Some(inner) => inner.purge(usize::MAX),
            None => return,
        }
    }
}

/// Locks a shard. A panic while a shard was locked cannot leave it half
/// changed in a way later calls would misread (every change is checked
/// before it is made), so a poisoned lock is taken over.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn index(&self, tag: &Tag) -> usize {
        let b = tag.as_str().as_bytes();
        // The tag is already random (or a hash): its bytes spread evenly.
        b.iter()
            .fold(0usize, |h, &x| h.wrapping_mul(31).wrapping_add(x as usize))
            % SHARDS
    }

    fn shard(&self, tag: &Tag) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.index(tag)])
    }

    fn user_shard(&self, user_id: &str) -> MutexGuard<'_, Shard> {
        self.shard(&Tag::for_user(user_id))
    }

    fn purge(&self, budget: usize) {
        let now = self.clock.now();
        for shard in &self.shards {
            lock(shard).purge(now, budget, &self.events);
        }
    }

    fn end(&self, ended: Vec<SessionEnded>) {
        for event in ended {
            crate::metrics::store_ended(event.reason);
            // No receiver means no connection is waiting: nothing to tell.
            let _ = self.events.send(event);
        }
    }
}

impl Shard {
    fn purge(&mut self, now: Millis, budget: usize, events: &broadcast::Sender<SessionEnded>) {
        let mut removed = 0;
        while removed < budget {
            if self
                .expiry
                .peek()
                .is_none_or(|Reverse((due, _))| *due > now)
            {
                break;
            }
            let id = match self.pop_expiry() {
                Popped::Empty => break,
                Popped::Skipped => continue,
                Popped::Due(_, id) => id,
            };
            if self.remove(&id).is_some() {
                let _ = events.send(SessionEnded {
                    id,
                    reason: EndReason::Expired,
                });
                removed += 1;
                crate::metrics::sessions_ended(crate::metrics::Ended::Expiry, 1);
            }
        }
        if removed > 0 {
            self.shrink();
        }
    }

    /// Pops the heap's nearest entry. An entry of a removed session, or one
    /// superseded by an earlier entry, is dropped; one whose session was
    /// used since it was scheduled goes back at the session's new deadline,
    /// so the next pop is the real nearest deadline. What comes out as
    /// [`Popped::Due`] is a session whose deadline is the entry's time.
    fn pop_expiry(&mut self) -> Popped {
        let Some(Reverse((due, id))) = self.expiry.pop() else {
            return Popped::Empty;
        };
        let Some(entry) = self.sessions.get_mut(&id) else {
            return Popped::Skipped;
        };
        if entry.scheduled != due {
            self.stale_entries = self.stale_entries.saturating_sub(1);
            return Popped::Skipped;
        }
        let deadline = entry.record.deadline();
        if deadline > due {
            entry.scheduled = deadline;
            self.expiry.push(Reverse((deadline, id)));
            return Popped::Skipped;
        }
        Popped::Due(due, id)
    }

    /// Makes room for one more session under `capacity`: removes what is
    /// expired, then evicts the anonymous, unconnected session nearest its
    /// deadline. Looks at no more than [`EVICT_SCAN`] heap entries; returns
    /// whether there is room.
    fn make_room(
        &mut self,
        capacity: usize,
        now: Millis,
        events: &broadcast::Sender<SessionEnded>,
    ) -> bool {
        if self.sessions.len() < capacity {
            return true;
        }
        self.purge(now, usize::MAX, events);
        // Entries popped that must stay: sessions that cannot be evicted.
        let mut kept = Vec::new();
        let mut room = self.sessions.len() < capacity;
        for _ in 0..EVICT_SCAN {
            if room {
                break;
            }
            let (due, id) = match self.pop_expiry() {
                Popped::Empty => break,
                Popped::Skipped => continue,
                Popped::Due(due, id) => (due, id),
            };
            let evictable = self
                .sessions
                .get(&id)
                .is_some_and(|e| e.record.user.is_none() && e.connections.is_empty());
            if !evictable {
                kept.push(Reverse((due, id)));
                continue;
            }
            if self.remove(&id).is_some() {
                let _ = events.send(SessionEnded {
                    id,
                    reason: EndReason::Expired,
                });
                crate::metrics::sessions_ended(crate::metrics::Ended::Evicted, 1);
            }
            room = self.sessions.len() < capacity;
        }
        self.expiry.extend(kept);
        room
    }

    /// Gives memory back once most of a map's room is unused.
    fn shrink(&mut self) {
        fn shrink<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
        shrink(&mut self.sessions);
        shrink(&mut self.tokens);
        shrink(&mut self.users);
        if self.expiry.capacity() > 64 && self.expiry.len() < self.expiry.capacity() / 4 {
            self.expiry.shrink_to_fit();
        }
    }

    fn insert(&mut self, new: &NewSession, data: HashMap<String, String>) {
        let record = SessionRecord {
            id: new.id.clone(),
            created_at: new.now,
            last_seen: new.now,
            idle_timeout: new.idle_timeout,
            absolute_deadline: new.absolute_deadline,
            ttg: new.now,
            rotated_at: None,
            renew_token: false,
            user: new.user.clone(),
            label: new.label.clone(),
            data,
        };
        let entry = Entry {
            tokens: TokenSlots::new(new.token.hash.clone()),
            device: new.device.clone(),
            connections: HashMap::new(),
            scheduled: 0,
            record,
        };
        if let Some(user) = &new.user {
            self.users
                .entry(user.id.clone())
                .or_default()
                .insert(new.id.clone());
        }
        self.tokens.insert(new.token.hash.clone(), new.id.clone());
        self.sessions.insert(new.id.clone(), entry);
        self.reschedule(&new.id);
    }

    /// Pushes a heap entry if the session's deadline moved earlier than the
    /// one it is scheduled for (later moves are found when the entry pops).
    fn reschedule(&mut self, id: &SessionId) {
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        let expires_at = entry.record.deadline();
        if entry.scheduled != 0 && expires_at >= entry.scheduled {
            return;
        }
        if entry.scheduled != 0 {
            self.stale_entries += 1;
        }
        entry.scheduled = expires_at;
        self.expiry.push(Reverse((expires_at, id.clone())));
        if self.stale_entries > self.sessions.len() {
            self.rebuild_expiry();
        }
    }

    /// One heap entry per session, at its scheduled deadline.
    fn rebuild_expiry(&mut self) {
        self.expiry = self
            .sessions
            .iter()
            .map(|(id, e)| Reverse((e.scheduled, id.clone())))
            .collect();
        self.stale_entries = 0;
    }

    /// Removes a session and everything that points at it.
    fn remove(&mut self, id: &SessionId) -> Option<Entry> {
        let entry = self.sessions.remove(id)?;
        for hash in entry.tokens.hashes() {
            self.tokens.remove(hash);
        }
        if let Some(user) = &entry.record.user {
            if let Some(set) = self.users.get_mut(&user.id) {
                set.remove(id);
                if set.is_empty() {
                    self.users.remove(&user.id);
                }
            }
        }
        Some(entry)
    }

    /// The live entry for `id`; a dead one is removed on the way.
    fn live(
        &mut self,
        id: &SessionId,
        now: Millis,
        ended: &mut Vec<SessionEnded>,
    ) -> Option<&mut Entry> {
        let is_live = self.sessions.get(id)?.is_live(now);
        if !is_live {
            self.remove(id);
            ended.push(SessionEnded {
                id: id.clone(),
                reason: EndReason::Expired,
            });
            return None;
        }
        let entry = self.sessions.get_mut(id)?;
        entry.tokens.forget_sealed(now);
        Some(entry)
    }

    /// The live sessions among up to `limit` entries of a user's index
    /// after `after`, in id order, pruning dead entries on the way; and the
    /// last entry looked at, where the next chunk starts.
    fn user_chunk(
        &mut self,
        user_id: &str,
        after: Option<&SessionId>,
        limit: usize,
        now: Millis,
        ended: &mut Vec<SessionEnded>,
    ) -> (Vec<SessionId>, Option<SessionId>) {
        let ids: Vec<SessionId> = match self.users.get(user_id) {
            None => Vec::new(),
            Some(set) => {
                let from = after.map_or(Bound::Unbounded, Bound::Excluded);
                set.range::<SessionId, _>((from, Bound::Unbounded))
                    .take(limit)
                    .cloned()
                    .collect()
            }
        };
        let last = ids.last().cloned();
        let live = ids
            .into_iter()
            .filter(|id| self.live(id, now, ended).is_some())
            .collect();
        (live, last)
    }

    /// Every live session of a user (for a login enforcing the limit, which
    /// the limit itself keeps small).
    fn user_sessions(
        &mut self,
        user_id: &str,
        now: Millis,
        ended: &mut Vec<SessionEnded>,
    ) -> Vec<SessionId> {
        self.user_chunk(user_id, None, usize::MAX, now, ended).0
    }

    fn end(&mut self, id: &SessionId, reason: EndReason, ended: &mut Vec<SessionEnded>) -> bool {
        let removed = self.remove(id).is_some();
        if removed {
            ended.push(SessionEnded {
                id: id.clone(),
                reason,
            });
        }
        removed
    }
}

impl Inner {
    /// Runs `step` over a user's live sessions in chunks of [`CHUNK`], in id
    /// order, taking the user's shard once per chunk.
    fn each_user_chunk(
        &self,
        user_id: &str,
        now: Millis,
        mut step: impl FnMut(&mut Shard, Vec<SessionId>, &mut Vec<SessionEnded>),
    ) {
        let mut after: Option<SessionId> = None;
        loop {
            let mut ended = Vec::new();
            let last = {
                let mut shard = self.user_shard(user_id);
                let (ids, last) = shard.user_chunk(user_id, after.as_ref(), CHUNK, now, &mut ended);
                step(&mut shard, ids, &mut ended);
                last
            };
            self.end(ended);
            match last {
                Some(last) => after = Some(last),
                None => return,
            }
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, req: &Load) -> Result<Lookup> {
        let (token, opts) = (&req.token, req);
        let now = opts.now;
        let mut ended = Vec::new();
        let lookup = {
            let mut shard = self.inner.shard(&token.tag());
            let Some(id) = shard.tokens.get(&token.hash).cloned() else {
                return Ok(Lookup::Missing);
            };
            match shard.live(&id, now, &mut ended) {
                None => Lookup::Missing,
                Some(entry) => match entry.tokens.resolve(&token.hash, now, opts.cijs) {
                    Resolution::Live(state) => {
                        entry.touch(now, opts.refresh_after);
                        Lookup::Found {
                            record: entry.record.clone(),
                            token: state,
                        }
                    }
                    Resolution::Stale => Lookup::Stale(id),
                    Resolution::Unknown => Lookup::Missing,
                },
            }
        };
        self.inner.end(ended);
        Ok(lookup)
    }

    async fn create(&self, new: &NewSession) -> Result<()> {
        new.check_user_tag()?;
        let mut shard = self.inner.shard(&new.id.tag());
        shard.purge(new.now, REAP_ON_WRITE, &self.inner.events);
        if let Some(capacity) = self.inner.shard_capacity {
            // A logged-in session is admitted even when nothing can be
            // evicted (see `MemoryStoreBuilder::max_sessions`).
            if !shard.make_room(capacity, new.now, &self.inner.events) && new.user.is_none() {
                return Err(StoreError::backend("the memory store is full"));
            }
        }
        shard.insert(new, new.data.iter().cloned().collect());
        Ok(())
    }

    async fn save(&self, req: &Save) -> Result<bool> {
        let (id, delta, now) = (&req.id, &req.delta, req.now);
        let mut ended = Vec::new();
        let saved = {
            let mut shard = self.inner.shard(&id.tag());
            let saved = match shard.live(id, now, &mut ended) {
                Some(entry) => {
                    entry.apply(delta);
                    // A write is a use of the session.
                    entry.record.last_seen = now;
                    true
                }
                None => false,
            };
            if saved {
                shard.reschedule(id);
            }
            saved
        };
        self.inner.end(ended);
        Ok(saved)
    }

    async fn rotate(&self, r: &Rotation) -> Result<Rotated> {
        let mut ended = Vec::new();
        let outcome = {
            let mut shard = self.inner.shard(&r.id.tag());
            let step = shard.live(&r.id, r.now, &mut ended).map(|entry| {
                let step = entry.tokens.rotate(r);
                if step.outcome == Rotated::Installed {
                    entry.record.ttg = r.now;
                    entry.record.rotated_at = Some(r.now);
                    entry.record.renew_token = false;
                }
                step
            });
            match step {
                None => Rotated::Gone,
                Some(step) => {
                    for hash in &step.dead {
                        shard.tokens.remove(hash);
                    }
                    if step.outcome == Rotated::Installed {
                        shard.tokens.insert(r.new.hash.clone(), r.id.clone());
                    }
                    step.outcome
                }
            }
        };
        self.inner.end(ended);
        Ok(outcome)
    }

    async fn regenerate(&self, req: &Regenerate) -> Result<bool> {
        let (id, new, delta, now) = (&req.id, &req.token, &req.delta, req.now);
        let mut ended = Vec::new();
        let done = {
            let mut shard = self.inner.shard(&id.tag());
            let dead = shard.live(id, now, &mut ended).map(|entry| {
                entry.record.ttg = now;
                entry.record.renew_token = false;
                entry.apply(delta);
                entry.tokens.regenerate(&new.hash)
            });
            match dead {
                Some(dead) => {
                    for hash in dead {
                        shard.tokens.remove(&hash);
                    }
                    shard.tokens.insert(new.hash.clone(), id.clone());
                    shard.reschedule(id);
                    true
                }
                None => false,
            }
        };
        self.inner.end(ended);
        Ok(done)
    }

    async fn login(&self, login: &Login) -> Result<LoginOutcome> {
        let new = &login.session;
        new.check_user_tag()?;
        let Some(user) = &new.user else {
            return Err(StoreError::corrupt("a login needs a user"));
        };
        let mut ended = Vec::new();
        let outcome = {
            let to = self.inner.index(&new.id.tag());
            let from = login.from.as_ref().map(|id| self.inner.index(&id.tag()));
            // Both shards are held for the whole login, always locked in
            // index order so two logins cannot deadlock.
            let (mut first, mut second) = match from {
                Some(from) if from != to => {
                    let (lo, hi) = (from.min(to), from.max(to));
                    let a = lock(&self.inner.shards[lo]);
                    let b = lock(&self.inner.shards[hi]);
                    if lo == to {
                        (a, Some(b))
                    } else {
                        (b, Some(a))
                    }
                }
                _ => (lock(&self.inner.shards[to]), None),
            };
            let target = &mut *first;
            let mut data = HashMap::new();
            if let Some(from_id) = &login.from {
                let source = match second.as_deref_mut() {
                    Some(s) => s,
                    None => &mut *target,
                };
                if source.live(from_id, new.now, &mut ended).is_some() {
                    if let Some(old) = source.remove(from_id) {
                        // Data carries over from an anonymous session or one
                        // of the same user, never from another user's.
                        if old.record.user.as_ref().is_none_or(|u| u.id == user.id) {
                            data = old.record.data;
                        }
                        ended.push(SessionEnded {
                            id: from_id.clone(),
                            reason: EndReason::Replaced,
                        });
                    }
                }
            }
            login.delta.apply_to(&mut data);
            target.purge(new.now, REAP_ON_WRITE, &self.inner.events);
            if let Some(capacity) = self.inner.shard_capacity {
                // Admitted whether or not room was made: see
                // `MemoryStoreBuilder::max_sessions`.
                target.make_room(capacity, new.now, &self.inner.events);
            }
            target.insert(new, data.clone());
            // The delta's data is in `data` already; its settings go on the
            // new session.
            if let Some(entry) = target.sessions.get_mut(&new.id) {
                if let Some(idle) = login.delta.idle_timeout {
                    entry.record.idle_timeout = idle;
                }
                if let Some(label) = &login.delta.label {
                    entry.record.label = Some(label.clone());
                }
            }
            target.reschedule(&new.id);
            let mut evicted = Vec::new();
            if let Some(max) = login.max_sessions {
                let mut live: Vec<(Millis, SessionId)> = target
                    .user_sessions(&user.id, new.now, &mut ended)
                    .into_iter()
                    .filter(|id| id != &new.id)
                    .filter_map(|id| Some((target.sessions.get(&id)?.record.created_at, id)))
                    .collect();
                live.sort();
                let excess = (live.len() + 1).saturating_sub(max.max(1));
                for (_, id) in live.into_iter().take(excess) {
                    if target.end(&id, EndReason::Revoked, &mut ended) {
                        evicted.push(id);
                    }
                }
            }
            LoginOutcome { data, evicted }
        };
        self.inner.end(ended);
        Ok(outcome)
    }

    async fn destroy(&self, req: &Destroy) -> Result<bool> {
        let (id, reason, now) = (&req.id, req.reason, req.now);
        let mut ended = Vec::new();
        let removed = {
            let mut shard = self.inner.shard(&id.tag());
            // A session found dead on the way is removed as expired.
            shard.live(id, now, &mut ended).is_some() && shard.end(id, reason, &mut ended)
        };
        self.inner.end(ended);
        Ok(removed)
    }

    async fn list_sessions(&self, req: &ListSessions) -> Result<Vec<SessionInfo>> {
        let (user_id, now) = (req.user_id.as_str(), req.now);
        let mut list: Vec<SessionInfo> = Vec::new();
        self.inner.each_user_chunk(user_id, now, |shard, ids, _| {
            list.extend(
                ids.iter()
                    .filter_map(|id| shard.sessions.get(id).map(Entry::info)),
            );
        });
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    async fn revoke(&self, req: &RevokeSessions) -> Result<Vec<SessionId>> {
        let (user_id, scope, now) = (req.user_id.as_str(), &req.scope, req.now);
        if let Revoke::One(one) = scope {
            let mut ended = Vec::new();
            let revoked = {
                let mut shard = self.inner.user_shard(user_id);
                let listed = shard
                    .users
                    .get(user_id)
                    .is_some_and(|set| set.contains(one));
                listed
                    && shard.live(one, now, &mut ended).is_some()
                    && shard.end(one, EndReason::Revoked, &mut ended)
            };
            self.inner.end(ended);
            return Ok(if revoked {
                vec![one.clone()]
            } else {
                Vec::new()
            });
        }
        let mut revoked = Vec::new();
        self.inner
            .each_user_chunk(user_id, now, |shard, ids, ended| {
                for id in ids {
                    let keep = matches!(scope, Revoke::AllExcept(keep) if keep == &id);
                    if !keep && shard.end(&id, EndReason::Revoked, ended) {
                        revoked.push(id);
                    }
                }
            });
        Ok(revoked)
    }

    async fn sync_user(&self, req: &SyncUser) -> Result<usize> {
        let (user, now) = (&req.user, req.now);
        let mut count = 0;
        self.inner.each_user_chunk(&user.id, now, |shard, ids, _| {
            for id in &ids {
                if let Some(entry) = shard.sessions.get_mut(id) {
                    entry.record.user = Some(user.clone());
                    entry.record.renew_token = true;
                    count += 1;
                }
            }
        });
        Ok(count)
    }

    async fn connect(&self, req: &Connect) -> Result<bool> {
        let (conn, lease_until, now) = (&req.connection, req.lease_until, req.now);
        let mut ended = Vec::new();
        let connected = {
            let mut shard = self.inner.shard(&conn.session.tag());
            match shard.live(&conn.session, now, &mut ended) {
                Some(entry) => {
                    entry.record.last_seen = now;
                    // Leases of crashed holders ran out: drop them, so they
                    // cannot pile up.
                    entry.connections.retain(|_, (_, until)| *until > now);
                    entry
                        .connections
                        .insert(conn.id.clone(), (conn.clone(), lease_until));
                    true
                }
                None => false,
            }
        };
        self.inner.end(ended);
        Ok(connected)
    }

    async fn fetch(&self, f: &Fetch) -> Result<Option<Fetched>> {
        let mut ended = Vec::new();
        let fetched = {
            let mut shard = self.inner.shard(&f.id.tag());
            shard.live(&f.id, f.now, &mut ended).map(|entry| {
                entry.record.last_seen = f.now;
                if let Some((conn_id, until)) = &f.lease {
                    if let Some(lease) = entry.connections.get_mut(conn_id) {
                        lease.1 = *until;
                    }
                }
                let known = f.known.as_ref().map(|k| k.hash.as_str());
                let (replacement, known_is_current) = entry.tokens.fetch(known, f.now);
                Fetched {
                    record: entry.record.clone(),
                    replacement,
                    known_is_current,
                }
            })
        };
        self.inner.end(ended);
        Ok(fetched)
    }

    async fn disconnect(&self, req: &Disconnect) -> Result<()> {
        let (id, connection_id) = (&req.id, req.connection_id.as_str());
        if let Some(entry) = self.inner.shard(&id.tag()).sessions.get_mut(id) {
            entry.connections.remove(connection_id);
        }
        Ok(())
    }

    async fn list_connections(&self, req: &ListConnections) -> Result<Vec<Connection>> {
        let (user_id, now) = (req.user_id.as_str(), req.now);
        let mut list = Vec::new();
        self.inner.each_user_chunk(user_id, now, |shard, ids, _| {
            for id in ids {
                if let Some(entry) = shard.sessions.get_mut(&id) {
                    // Leases of a crashed holder run out by themselves.
                    entry.connections.retain(|_, (_, until)| *until > now);
                    list.extend(entry.connections.values().map(|(c, _)| c.clone()));
                }
            }
        });
        Ok(list)
    }

    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Token;

    #[tokio::test]
    async fn rotations_do_not_grow_the_expiry_heap() {
        let store = MemoryStore::new();
        let clock = 1_000_000;
        let token = Token::generate(&SessionId::generate(&Tag::random()));
        let id = token.session_id();
        let new = NewSession {
            device: None,
            id: id.clone(),
            token: token.digest(),
            now: clock,
            idle_timeout: 60_000,
            absolute_deadline: None,
            user: None,
            label: None,
            data: Vec::new(),
        };
        store.create(&new).await.unwrap();
        let mut old = token;
        for i in 0..1_000u64 {
            let now = clock + i * 10;
            let next = Token::generate(&old.session_id());
            let r = Rotation {
                id: id.clone(),
                old: old.digest(),
                new: next.digest(),
                sealed: crate::token::seal(&old, &next),
                now,
                ojs: 5,
                cijs: 5,
            };
            assert_eq!(store.rotate(&r).await.unwrap(), Rotated::Installed);
            // Alternate shorter and longer timeouts, the moves that push.
            let idle = if i % 2 == 0 { 30_000 } else { 60_000 };
            let delta = Delta {
                idle_timeout: Some(idle),
                ..Delta::default()
            };
            assert!(store
                .save(&Save {
                    id: id.clone(),
                    delta,
                    now
                })
                .await
                .unwrap());
            old = next;
        }
        let heap: usize = store
            .inner
            .shards
            .iter()
            .map(|s| lock(s).expiry.len())
            .sum();
        assert!(heap <= 3, "{heap} heap entries for one session");
    }

    fn new_session(tag: &Tag, user: Option<&str>, now: Millis) -> (NewSession, Token) {
        let token = Token::generate(&SessionId::generate(tag));
        let new = NewSession {
            id: token.session_id(),
            token: token.digest(),
            now,
            idle_timeout: 60_000,
            absolute_deadline: None,
            user: user.map(|id| BoundUser {
                id: id.to_owned(),
                json: "{}".to_owned(),
            }),
            label: None,
            device: None,
            data: Vec::new(),
        };
        (new, token)
    }

    fn load(token: &Token, now: Millis) -> Load {
        Load {
            token: token.digest(),
            now,
            refresh_after: Some(0),
            cijs: 1_000,
        }
    }

    /// A random tag whose sessions land in shard `index`.
    fn tag_in_shard(store: &MemoryStore, index: usize) -> Tag {
        for _ in 0..100_000 {
            let tag = Tag::random();
            if store.inner.index(&tag) == index {
                return tag;
            }
        }
        panic!("no tag for shard {index}");
    }

    #[tokio::test]
    async fn a_bounded_store_never_holds_more_than_its_bound_under_a_flood() {
        let store = MemoryStore::builder().max_sessions(64).build();
        let mut tokens = Vec::new();
        for i in 0..2_000u64 {
            let (new, token) = new_session(&Tag::random(), None, 1_000 + i);
            store.create(&new).await.unwrap();
            tokens.push(token);
            assert!(store.len() <= 64, "{} sessions after {i}", store.len());
        }
        // The newest sessions are kept, the oldest were evicted.
        let now = 1_000 + 2_000;
        let last = tokens.last().unwrap();
        assert!(matches!(
            store.load(&load(last, now)).await.unwrap(),
            Lookup::Found { .. }
        ));
        assert!(matches!(
            store.load(&load(&tokens[0], now)).await.unwrap(),
            Lookup::Missing
        ));
        let (t, u, c) = store.footprint();
        assert_eq!(
            (t, u, c),
            (store.len(), 0, 0),
            "evicted sessions leave nothing behind"
        );
    }

    #[tokio::test]
    async fn eviction_takes_the_least_recently_used_anonymous_session() {
        let store = MemoryStore::builder().max_sessions(2 * SHARDS).build();
        let tag = tag_in_shard(&store, 3);
        let (a, token_a) = new_session(&tag, None, 1_000);
        let (b, token_b) = new_session(&tag, None, 2_000);
        store.create(&a).await.unwrap();
        store.create(&b).await.unwrap();
        // `a` is used after `b`: `b` is now the least recently used.
        assert!(matches!(
            store.load(&load(&token_a, 3_000)).await.unwrap(),
            Lookup::Found { .. }
        ));
        let (c, token_c) = new_session(&tag, None, 4_000);
        store.create(&c).await.unwrap();
        for (token, kept) in [(&token_a, true), (&token_b, false), (&token_c, true)] {
            let found = matches!(
                store.load(&load(token, 5_000)).await.unwrap(),
                Lookup::Found { .. }
            );
            assert_eq!(found, kept);
        }
    }

    #[tokio::test]
    async fn a_full_store_evicts_no_logged_in_session_and_refuses_anonymous_ones() {
        let store = MemoryStore::builder().max_sessions(SHARDS).build();
        let user_tag = Tag::for_user("7");
        let (user, user_token) = new_session(&user_tag, Some("7"), 1_000);
        store.create(&user).await.unwrap();
        let tag = tag_in_shard(&store, store.inner.index(&user_tag));
        let (anon, _) = new_session(&tag, None, 2_000);
        let err = store.create(&anon).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Backend);
        assert!(matches!(
            store.load(&load(&user_token, 3_000)).await.unwrap(),
            Lookup::Found { .. }
        ));
        // Once the logged-in session has expired (idle since 3 s), there is
        // room again.
        let (anon, anon_token) = new_session(&tag, None, 3_000 + 60_000);
        store.create(&anon).await.unwrap();
        assert!(matches!(
            store.load(&load(&anon_token, 63_001)).await.unwrap(),
            Lookup::Found { .. }
        ));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn a_login_is_admitted_into_a_full_store() {
        let store = MemoryStore::builder().max_sessions(SHARDS).build();
        let user_tag = Tag::for_user("7");
        let (first, _) = new_session(&user_tag, Some("7"), 1_000);
        store.create(&first).await.unwrap();
        let (second, token) = new_session(&user_tag, Some("7"), 2_000);
        let login = Login {
            from: None,
            delta: Delta::default(),
            session: second,
            max_sessions: None,
        };
        store.login(&login).await.unwrap();
        assert!(matches!(
            store.load(&load(&token, 3_000)).await.unwrap(),
            Lookup::Found { .. }
        ));
        assert_eq!(store.len(), 2);
    }
}
