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
//! when a change moves the deadline earlier (a rotation whose replacement may
//! never be adopted), a new entry is pushed at once and the old one is
//! recognised as stale when popped. So the heap holds about one entry per
//! session. A background task pops what is due once a second, and writes pop
//! a little too, so memory returns whether or not a runtime runs the task.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::*;
use crate::clock::{Clock, Millis, SystemClock};
use crate::token::{SessionId, Tag, TokenDigest};

const SHARDS: usize = 16;
const REAP_EVERY: Duration = Duration::from_secs(1);
/// Expired sessions a write removes on its way, so a store with no
/// background task still returns memory.
const REAP_ON_WRITE: usize = 2;

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
}

#[derive(Default)]
struct Shard {
    tokens: HashMap<String, SessionId>,
    sessions: HashMap<SessionId, Entry>,
    users: HashMap<String, HashSet<SessionId>>,
    expiry: BinaryHeap<Reverse<(Millis, SessionId)>>,
}

struct Entry {
    record: SessionRecord,
    current: String,
    adopted: bool,
    lapse_at: Millis,
    previous: Option<Previous>,
    connections: HashMap<String, (Connection, Millis)>,
    /// The deadline of this session's authoritative heap entry.
    scheduled: Millis,
}

struct Previous {
    hash: String,
    grace_until: Millis,
    sealed: String,
}

impl Entry {
    /// The moment the session stops being live: its deadlines, or, while its
    /// replacement token is unadopted, the moment no token can reach it.
    fn expires_at(&self) -> Millis {
        let deadline = self.record.deadline();
        if self.adopted {
            return deadline;
        }
        let grace = self.previous.as_ref().map_or(0, |p| p.grace_until);
        deadline.min(self.lapse_at.max(grace))
    }

    fn is_live(&self, now: Millis) -> bool {
        now < self.expires_at()
    }

    fn touch(&mut self, now: Millis, refresh_after: Millis) {
        if now.saturating_sub(self.record.last_seen) >= refresh_after {
            self.record.last_seen = now;
        }
    }

    /// Makes the rotation's candidate the current, unadopted token.
    fn install(&mut self, r: &Rotation) {
        self.current = r.new.hash.clone();
        self.adopted = false;
        self.lapse_at = r.now.saturating_add(r.cijs);
        self.record.ttg = r.now;
        self.record.rotated_at = Some(r.now);
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
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            events,
            clock: Arc::new(clock),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap_forever(Arc::downgrade(&inner)));
        }
        MemoryStore { inner }
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
                u + s.users.values().map(HashSet::len).sum::<usize>(),
                c + s
                    .sessions
                    .values()
                    .map(|e| e.connections.len())
                    .sum::<usize>(),
            )
        })
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
            // No receiver means no connection is waiting: nothing to tell.
            let _ = self.events.send(event);
        }
    }
}

impl Shard {
    fn purge(&mut self, now: Millis, budget: usize, events: &broadcast::Sender<SessionEnded>) {
        let mut removed = 0;
        while removed < budget {
            let Some(Reverse((due, _))) = self.expiry.peek() else {
                break;
            };
            if *due > now {
                break;
            }
            let Some(Reverse((due, id))) = self.expiry.pop() else {
                break;
            };
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            if entry.scheduled != due {
                continue; // superseded by an earlier entry
            }
            let expires_at = entry.expires_at();
            if expires_at > now {
                entry.scheduled = expires_at;
                self.expiry.push(Reverse((expires_at, id)));
                continue;
            }
            if self.remove(&id).is_some() {
                let _ = events.send(SessionEnded {
                    id,
                    reason: EndReason::Expired,
                });
                removed += 1;
            }
        }
        if removed > 0 {
            self.shrink();
        }
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
            user: new.user.clone(),
            label: new.label.clone(),
            data,
        };
        let entry = Entry {
            current: new.token.hash.clone(),
            adopted: true,
            lapse_at: 0,
            previous: None,
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
        if let Some(entry) = self.sessions.get_mut(id) {
            let expires_at = entry.expires_at();
            if entry.scheduled == 0 || expires_at < entry.scheduled {
                entry.scheduled = expires_at;
                self.expiry.push(Reverse((expires_at, id.clone())));
            }
        }
    }

    /// Removes a session and everything that points at it.
    fn remove(&mut self, id: &SessionId) -> Option<Entry> {
        let entry = self.sessions.remove(id)?;
        self.tokens.remove(&entry.current);
        if let Some(prev) = &entry.previous {
            self.tokens.remove(&prev.hash);
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
        self.sessions.get_mut(id)
    }

    /// The live sessions in a user's index, pruning dead entries.
    fn user_sessions(
        &mut self,
        user_id: &str,
        now: Millis,
        ended: &mut Vec<SessionEnded>,
    ) -> Vec<SessionId> {
        let ids: Vec<SessionId> = self
            .users
            .get(user_id)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter(|id| self.live(id, now, ended).is_some())
            .collect()
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

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, token: &TokenDigest, opts: &LoadOptions) -> Result<Lookup> {
        let now = opts.now;
        let mut ended = Vec::new();
        let lookup = {
            let mut shard = self.inner.shard(&token.tag);
            let Some(id) = shard.tokens.get(&token.hash).cloned() else {
                return Ok(Lookup::Missing);
            };
            match shard.live(&id, now, &mut ended) {
                None => Lookup::Missing,
                Some(entry) => {
                    let state = if entry.current == token.hash {
                        if !entry.adopted && now >= entry.lapse_at {
                            // A replacement presented after it lapsed never
                            // works again.
                            None
                        } else {
                            entry.adopted = true;
                            Some(TokenState::Current)
                        }
                    } else {
                        match &entry.previous {
                            Some(prev) if prev.hash == token.hash => {
                                if now >= prev.grace_until {
                                    return Ok(Lookup::Stale(id));
                                }
                                let replacement = if entry.adopted || now < entry.lapse_at {
                                    Some(prev.sealed.clone())
                                } else {
                                    None
                                };
                                if !entry.adopted && replacement.is_some() {
                                    entry.lapse_at = now.saturating_add(opts.cijs);
                                }
                                Some(TokenState::Grace { replacement })
                            }
                            _ => None,
                        }
                    };
                    match state {
                        Some(token) => {
                            entry.touch(now, opts.refresh_after);
                            Lookup::Found {
                                record: entry.record.clone(),
                                token,
                            }
                        }
                        None => Lookup::Missing,
                    }
                }
            }
        };
        self.inner.end(ended);
        Ok(lookup)
    }

    async fn create(&self, new: &NewSession) -> Result<()> {
        new.check_user_tag()?;
        let mut shard = self.inner.shard(&new.id.tag());
        shard.purge(new.now, REAP_ON_WRITE, &self.inner.events);
        shard.insert(new, new.data.iter().cloned().collect());
        Ok(())
    }

    async fn save(&self, id: &SessionId, delta: &Delta, now: Millis) -> Result<bool> {
        let mut ended = Vec::new();
        let saved = {
            let mut shard = self.inner.shard(&id.tag());
            let saved = match shard.live(id, now, &mut ended) {
                Some(entry) => {
                    entry.apply(delta);
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
        let now = r.now;
        let mut ended = Vec::new();
        let outcome = {
            let mut shard = self.inner.shard(&r.id.tag());
            // Tokens to forget, collected while the entry is borrowed.
            let mut dead = Vec::new();
            let outcome = match shard.live(&r.id, now, &mut ended) {
                None => Rotated::Gone,
                Some(entry) => {
                    let lapsed = !entry.adopted && now >= entry.lapse_at;
                    let grace_of_old = entry
                        .previous
                        .as_ref()
                        .filter(|p| p.hash == r.old.hash && now < p.grace_until)
                        .is_some();
                    if entry.current == r.old.hash && !lapsed {
                        // First rotation of the current token: it becomes the
                        // previous one, and the one before it dies for good.
                        let before = entry.previous.replace(Previous {
                            hash: r.old.hash.clone(),
                            grace_until: now.saturating_add(r.ojs),
                            sealed: r.sealed.clone(),
                        });
                        dead.extend(before.map(|p| p.hash));
                        entry.install(r);
                        Rotated::Installed
                    } else if grace_of_old && lapsed {
                        // The replacement was never presented: discard it
                        // for good and mint the candidate instead.
                        dead.push(entry.current.clone());
                        if let Some(prev) = &mut entry.previous {
                            prev.sealed = r.sealed.clone();
                        }
                        entry.install(r);
                        Rotated::Installed
                    } else if grace_of_old {
                        // Another request rotated first: hand out its
                        // replacement, which is about to be sent again.
                        if !entry.adopted {
                            entry.lapse_at = now.saturating_add(r.cijs);
                        }
                        let sealed = entry.previous.as_ref().map(|p| p.sealed.clone());
                        sealed.map_or(Rotated::Gone, Rotated::Existing)
                    } else {
                        Rotated::Gone
                    }
                }
            };
            for hash in dead {
                shard.tokens.remove(&hash);
            }
            if outcome == Rotated::Installed {
                shard.tokens.insert(r.new.hash.clone(), r.id.clone());
                shard.reschedule(&r.id);
            }
            outcome
        };
        self.inner.end(ended);
        Ok(outcome)
    }

    async fn regenerate(
        &self,
        id: &SessionId,
        new: &TokenDigest,
        delta: &Delta,
        now: Millis,
    ) -> Result<bool> {
        let mut ended = Vec::new();
        let done = {
            let mut shard = self.inner.shard(&id.tag());
            let dead = shard.live(id, now, &mut ended).map(|entry| {
                let old = std::mem::replace(&mut entry.current, new.hash.clone());
                let prev = entry.previous.take();
                entry.adopted = true;
                entry.record.ttg = now;
                entry.apply(delta);
                std::iter::once(old)
                    .chain(prev.map(|p| p.hash))
                    .collect::<Vec<_>>()
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
                        data = old.record.data;
                        ended.push(SessionEnded {
                            id: from_id.clone(),
                            reason: EndReason::Replaced,
                        });
                    }
                }
            }
            login.delta.apply_to(&mut data);
            target.purge(new.now, REAP_ON_WRITE, &self.inner.events);
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

    async fn destroy(&self, id: &SessionId, reason: EndReason, now: Millis) -> Result<bool> {
        let mut ended = Vec::new();
        let removed = {
            let mut shard = self.inner.shard(&id.tag());
            // A session found dead on the way is removed as expired.
            shard.live(id, now, &mut ended).is_some() && shard.end(id, reason, &mut ended)
        };
        self.inner.end(ended);
        Ok(removed)
    }

    async fn list_sessions(&self, user_id: &str, now: Millis) -> Result<Vec<SessionInfo>> {
        let mut ended = Vec::new();
        let mut list: Vec<SessionInfo> = {
            let mut shard = self.inner.user_shard(user_id);
            shard
                .user_sessions(user_id, now, &mut ended)
                .iter()
                .filter_map(|id| shard.sessions.get(id).map(|e| (&e.record).into()))
                .collect()
        };
        self.inner.end(ended);
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    async fn revoke(&self, user_id: &str, scope: &Revoke, now: Millis) -> Result<Vec<SessionId>> {
        let mut ended = Vec::new();
        let revoked = {
            let mut shard = self.inner.user_shard(user_id);
            let targets: Vec<SessionId> = shard
                .user_sessions(user_id, now, &mut ended)
                .into_iter()
                .filter(|id| match scope {
                    Revoke::One(one) => id == one,
                    Revoke::All => true,
                    Revoke::AllExcept(keep) => id != keep,
                })
                .collect();
            targets
                .into_iter()
                .filter(|id| shard.end(id, EndReason::Revoked, &mut ended))
                .collect()
        };
        self.inner.end(ended);
        Ok(revoked)
    }

    async fn sync_user(&self, user: &BoundUser, now: Millis) -> Result<usize> {
        let mut ended = Vec::new();
        let count = {
            let mut shard = self.inner.user_shard(&user.id);
            let ids = shard.user_sessions(&user.id, now, &mut ended);
            for id in &ids {
                if let Some(entry) = shard.sessions.get_mut(id) {
                    entry.record.user = Some(user.clone());
                }
            }
            ids.len()
        };
        self.inner.end(ended);
        Ok(count)
    }

    async fn connect(&self, conn: &Connection, lease_until: Millis, now: Millis) -> Result<bool> {
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
                        // A live connection holds the session and hands the
                        // replacement over itself: it cannot lapse under it.
                        entry.adopted = true;
                    }
                }
                let known = f.known.as_ref().map(|k| &k.hash);
                // A replacement that lapsed unadopted is never handed out
                // again, nor does it count as the current token.
                let reachable = entry.adopted || f.now < entry.lapse_at;
                let replacement = match (&entry.previous, known) {
                    (Some(prev), Some(k))
                        if &prev.hash == k && f.now < prev.grace_until && reachable =>
                    {
                        Some(prev.sealed.clone())
                    }
                    _ => None,
                };
                Fetched {
                    record: entry.record.clone(),
                    replacement,
                    known_is_current: reachable && known == Some(&entry.current),
                }
            })
        };
        self.inner.end(ended);
        Ok(fetched)
    }

    async fn disconnect(&self, id: &SessionId, connection_id: &str) -> Result<()> {
        if let Some(entry) = self.inner.shard(&id.tag()).sessions.get_mut(id) {
            entry.connections.remove(connection_id);
        }
        Ok(())
    }

    async fn list_connections(&self, user_id: &str, now: Millis) -> Result<Vec<Connection>> {
        let mut ended = Vec::new();
        let list = {
            let mut shard = self.inner.user_shard(user_id);
            let ids = shard.user_sessions(user_id, now, &mut ended);
            let mut list = Vec::new();
            for id in ids {
                if let Some(entry) = shard.sessions.get_mut(&id) {
                    // Leases of a crashed holder run out by themselves.
                    entry.connections.retain(|_, (_, until)| *until > now);
                    list.extend(entry.connections.values().map(|(c, _)| c.clone()));
                }
            }
            list
        };
        self.inner.end(ended);
        Ok(list)
    }

    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        self.inner.events.subscribe()
    }
}
