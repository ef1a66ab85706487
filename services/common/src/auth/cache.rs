//! The identity store's read cache: token hash → identity and subject →
//! role bindings, bounded, and kept current by a watch of the `auth` bucket
//! ([`IdentityStore::watch`](super::store::IdentityStore::watch)) rather
//! than by a TTL, so that a revocation takes effect as soon as the watch
//! delivers it (milliseconds).
//!
//! # Invariants
//!
//! - **Only a running watch makes the cache live.** Until the watch is
//!   established, and from the moment it fails until it is re-established,
//!   nothing is cached and every read goes to the KV, as without a cache.
//! - **No stale insert.** Every change the watch delivers bumps a
//!   generation; a reader notes the generation before its KV read and
//!   caches the value only if it is unchanged, so a value read before a
//!   change can never be cached after the change was applied.
//! - **Bounded, and only by the holders of a valid token.** Unknown tokens
//!   are never cached (a wrong token costs one KV read, as without a cache);
//!   binding lists are cached only for the subjects of an identity that
//!   authenticated. Each map holds at most `capacity` entries.

use std::sync::Mutex;

use super::{Identity, TokenHash, store::StoredBinding};

/// Default of `auth.cache_size`: token and binding entries kept, each.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

pub use crate::bounded::Bounded;

/// What the cache holds; see the module docs for its invariants.
#[derive(Debug)]
pub(crate) struct IdentityCache {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Whether a watch is running (see the module docs).
    live: bool,
    /// Bumped by every change the watch delivers, and when it starts or stops.
    generation: u64,
    /// Stored identities by token hash; only tokens that exist.
    tokens: Bounded<TokenHash, Identity>,
    /// Stored bindings by KV key; an empty list for a subject without any.
    bindings: Bounded<String, Vec<StoredBinding>>,
}

/// What a reader notes before it reads the KV, to cache what it read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(Option<u64>);

/// The KV key prefixes whose changes the cache follows.
pub(crate) const TOKEN_PREFIX: &str = "tokens.";
pub(crate) const BINDINGS_PREFIX: &str = "bindings.";

impl IdentityCache {
    /// An empty, not yet live, cache of `capacity` entries per map.
    pub fn new(capacity: usize) -> Self {
        IdentityCache {
            inner: Mutex::new(Inner {
                live: false,
                generation: 0,
                tokens: Bounded::new(capacity),
                bindings: Bounded::new(capacity),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // a panic while holding the lock leaves maps that are still consistent
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The identity of `hash`, if cached; else a ticket for caching the read.
    pub fn token(&self, hash: &TokenHash) -> Result<Identity, Ticket> {
        let mut inner = self.lock();
        match inner.tokens.get(hash) {
            Some(identity) => Ok(identity),
            None => Err(inner.ticket()),
        }
    }

    /// Caches what was read for `hash` under `ticket`: an identity only,
    /// never the absence of one.
    pub fn put_token(&self, ticket: Ticket, hash: &TokenHash, identity: Option<&Identity>) {
        let mut inner = self.lock();
        if let Some(identity) = identity
            && inner.valid(ticket)
        {
            inner.tokens.insert(hash.clone(), identity.clone());
        }
    }

    /// The bindings stored under `key`, if cached; else a ticket.
    pub fn bindings(&self, key: &str) -> Result<Vec<StoredBinding>, Ticket> {
        let mut inner = self.lock();
        match inner.bindings.get(&key.to_owned()) {
            Some(bindings) => Ok(bindings),
            None => Err(inner.ticket()),
        }
    }

    /// Caches the bindings read under `key` with `ticket`.
    pub fn put_bindings(&self, ticket: Ticket, key: &str, bindings: &[StoredBinding]) {
        let mut inner = self.lock();
        if inner.valid(ticket) {
            inner.bindings.insert(key.to_owned(), bindings.to_vec());
        }
    }

    /// Applies a change of KV `key` that the watch delivered.
    pub fn changed(&self, key: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        if let Some(hash) = key.strip_prefix(TOKEN_PREFIX) {
            // a key that is no hash cannot be cached either
            if let Ok(hash) = TokenHash::parse(hash) {
                inner.tokens.remove(&hash);
            }
        } else if key.starts_with(BINDINGS_PREFIX) {
            inner.bindings.remove(&key.to_owned());
        }
    }

    /// Starts (`true`: the watch is established) or stops caching; either
    /// way, forgets everything.
    pub fn set_live(&self, live: bool) {
        let mut inner = self.lock();
        inner.live = live;
        inner.generation += 1;
        inner.tokens.clear();
        inner.bindings.clear();
    }

    /// Entries kept: (tokens, binding lists).
    pub fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.tokens.len(), inner.bindings.len())
    }
}

impl Inner {
    fn ticket(&self) -> Ticket {
        Ticket(self.live.then_some(self.generation))
    }

    fn valid(&self, ticket: Ticket) -> bool {
        self.live && ticket.0 == Some(self.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, Token};

    #[test]
    fn bounded_keeps_at_most_its_capacity_and_the_recently_used() {
        let mut map = Bounded::new(4);
        for i in 0..100 {
            map.insert(i, i);
            assert!(map.len() <= 4, "{} entries after {i}", map.len());
            // 0 is used all the time, so it stays
            assert_eq!(map.get(&0), Some(0), "after {i}");
        }
        assert_eq!(map.get(&98), Some(98));
        assert_eq!(map.get(&1), None);
        map.remove(&0);
        assert_eq!(map.get(&0), None);
        let mut none = Bounded::new(0);
        none.insert(1, 1);
        assert!(none.is_empty());
    }

    fn identity() -> Identity {
        Identity::service_account("ns", "sa")
    }

    #[test]
    fn nothing_is_cached_until_the_watch_runs() {
        let cache = IdentityCache::new(8);
        let hash = Token::new("t").hash();
        let ticket = cache.token(&hash).unwrap_err();
        cache.put_token(ticket, &hash, Some(&identity()));
        assert!(cache.token(&hash).is_err(), "cached while not live");

        cache.set_live(true);
        let ticket = cache.token(&hash).unwrap_err();
        cache.put_token(ticket, &hash, Some(&identity()));
        assert_eq!(cache.token(&hash).unwrap(), identity());

        cache.set_live(false);
        assert!(cache.token(&hash).is_err(), "kept after the watch stopped");
    }

    #[test]
    fn a_change_during_a_read_is_not_overwritten_by_the_stale_value() {
        let cache = IdentityCache::new(8);
        cache.set_live(true);
        let hash = Token::new("t").hash();
        let key = format!("{TOKEN_PREFIX}{}", hash.as_str());
        let ticket = cache.token(&hash).unwrap_err();
        // the token is deleted while the reader waits for the KV
        cache.changed(&key);
        cache.put_token(ticket, &hash, Some(&identity()));
        assert!(cache.token(&hash).is_err());

        let ticket = cache.token(&hash).unwrap_err();
        cache.put_token(ticket, &hash, Some(&identity()));
        assert!(cache.token(&hash).is_ok());
        cache.changed(&key);
        assert!(cache.token(&hash).is_err(), "the change evicts it");
    }

    #[test]
    fn unknown_tokens_are_not_cached_and_bindings_follow_their_key() {
        let cache = IdentityCache::new(8);
        cache.set_live(true);
        for i in 0..100 {
            let hash = Token::new(format!("wrong-{i}")).hash();
            let ticket = cache.token(&hash).unwrap_err();
            cache.put_token(ticket, &hash, None);
        }
        assert_eq!(cache.len(), (0, 0));

        let key = "bindings.user.6e73";
        let ticket = cache.bindings(key).unwrap_err();
        let stored = vec![StoredBinding {
            namespace: Some("ns".into()),
            role: Role::View,
        }];
        cache.put_bindings(ticket, key, &stored);
        assert_eq!(cache.bindings(key).unwrap(), stored);
        cache.changed("bindings.group.6e73");
        assert_eq!(cache.bindings(key).unwrap(), stored, "another key");
        cache.changed(key);
        assert!(cache.bindings(key).is_err());
    }
}
