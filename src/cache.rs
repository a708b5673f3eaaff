//! The verdict cache of [`Verifier::with_cache`](crate::Verifier::with_cache): a token whose exact
//! bytes verified before skips the HMAC.
//!
//! - **What it holds**: for each token that verified, its bytes, where its id sits in them, the
//!   key type that matched, its form and its expiry: the signature's verdict, never the lifetime's,
//!   which the verifier checks against `now` on every use.
//! - **Lookup**: a hash of the token's bytes, keyed by a random seed per cache, picks one slot;
//!   the slot is a hit when its hash and length match and its bytes equal the token's, compared
//!   in constant time over the whole token. A forgery lands in a slot chosen by a keyed hash and
//!   is compared with whatever is there without an early exit, so its time says nothing about
//!   how close it came to a cached token; it then pays the HMAC, and is never stored.
//! - **Memory**: fixed at creation: `capacity` slots (rounded up to a power of two) of 320
//!   bytes, nothing allocated after. A new token takes its slot's place (one slot per hash).
//!   Tokens longer than [`MAX_CACHED_LEN`] bytes are verified without the cache.
//! - **Threads**: each slot is a sequence lock over atomics: readers never write, so two threads
//!   verifying the same token do not contend; a reader that meets a slot being written treats it
//!   as a miss. No lock is held across the HMAC.
//! - **Secrets**: cached tokens are bearer credentials: the slots are zeroed when the cache is
//!   dropped, and no `Debug` output shows them.

use std::hash::BuildHasher;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::key::KeyType;
use crate::token::Format;

/// Words of token bytes a slot holds.
const SLOT_WORDS: usize = 36;

/// The longest token the cache holds: the uid form with an id of 80 bytes and the
/// `SharedAccessSignature ` scheme (230 bytes), with room to spare.
pub(crate) const MAX_CACHED_LEN: usize = SLOT_WORDS * 8;

/// One cached verdict, on cache lines of its own (a token of 110 bytes spans three of them). `meta` packs the token's length (11 bits), where its id starts (11) and
/// its length (7), the key type (1), the form (1) and the expiry's nanoseconds (30).
#[repr(align(64))]
struct Slot {
    /// Even when the slot is stable; odd while it is written.
    version: AtomicU64,
    /// The token's keyed hash; 0 when the slot is empty.
    tag: AtomicU64,
    meta: AtomicU64,
    /// The expiry's seconds since the Unix epoch, as `i64` bits.
    seconds: AtomicU64,
    words: [AtomicU64; SLOT_WORDS],
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            version: AtomicU64::new(0),
            tag: AtomicU64::new(0),
            meta: AtomicU64::new(0),
            seconds: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A signature's verdict, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Where the id sits in the token's bytes.
    pub(crate) id: std::ops::Range<usize>,
    pub(crate) key_type: KeyType,
    pub(crate) format: Format,
    pub(crate) expiry: DateTime<Utc>,
}

/// The cache: a fixed table of slots and the seed of its hash.
pub(crate) struct Cache {
    slots: Box<[Slot]>,
    mask: usize,
    hasher: foldhash::quality::RandomState,
}

/// The word of up to 8 token bytes, zero-padded.
#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(chunk) {
        Ok(bytes) => u64::from_le_bytes(bytes),
        Err(_) => {
            let mut bytes = [0u8; 8];
            for (to, from) in bytes.iter_mut().zip(chunk) {
                *to = *from;
            }
            u64::from_le_bytes(bytes)
        }
    }
}

impl Cache {
    /// A cache of at least `capacity` slots (`capacity` > 0), all empty.
    pub(crate) fn new(capacity: usize) -> Cache {
        let size = capacity
            .max(1)
            .checked_next_power_of_two()
            .unwrap_or(1 << 30);
        Cache {
            slots: (0..size).map(|_| Slot::empty()).collect(),
            mask: size - 1,
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// How many verdicts it holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The token's keyed hash, never 0 (an empty slot's tag).
    #[inline]
    pub(crate) fn hash(&self, token: &[u8]) -> u64 {
        self.hasher.hash_one(token).max(1)
    }

    #[inline]
    fn slot(&self, hash: u64) -> Option<&Slot> {
        // The low bits pick the slot; `mask` fits in usize, so the cast keeps them.
        self.slots.get((hash as usize) & self.mask)
    }

    /// The verdict stored for exactly `token` (hashed to `hash`), if any.
    #[inline]
    pub(crate) fn get(&self, token: &[u8], hash: u64) -> Option<Verdict> {
        if token.is_empty() || token.len() > MAX_CACHED_LEN {
            return None;
        }
        let slot = self.slot(hash)?;
        let before = slot.version.load(Ordering::Acquire);
        if before & 1 == 1 || slot.tag.load(Ordering::Relaxed) != hash {
            return None;
        }
        let meta = slot.meta.load(Ordering::Relaxed);
        let seconds = slot.seconds.load(Ordering::Relaxed);
        if (meta & 0x7FF) as usize != token.len() {
            return None;
        }
        // The whole token, without an early exit.
        let mut differ = 0u64;
        for (chunk, stored) in token.chunks(8).zip(slot.words.iter()) {
            differ |= word(chunk) ^ stored.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        if slot.version.load(Ordering::Relaxed) != before {
            return None;
        }
        if std::hint::black_box(differ) != 0 {
            return None;
        }
        let id_start = ((meta >> 11) & 0x7FF) as usize;
        let id_len = ((meta >> 22) & 0x7F) as usize;
        let key_type = if meta >> 29 & 1 == 0 {
            KeyType::Primary
        } else {
            KeyType::Secondary
        };
        let format = if meta >> 30 & 1 == 0 {
            Format::Compact
        } else {
            Format::Uid
        };
        let nanos = (meta >> 31) as u32;
        let expiry = DateTime::from_timestamp(seconds as i64, nanos)?;
        Some(Verdict {
            id: id_start..id_start + id_len,
            key_type,
            format,
            expiry,
        })
    }

    /// Stores the verdict of `token` (hashed to `hash`) in its slot, in place of what was there.
    /// Skipped when another thread is writing that slot, or the token does not fit.
    #[inline]
    pub(crate) fn put(&self, token: &[u8], hash: u64, verdict: &Verdict) {
        let id_len = verdict.id.len();
        if token.is_empty()
            || token.len() > MAX_CACHED_LEN
            || verdict.id.start > 0x7FF
            || id_len > 0x7F
        {
            return;
        }
        let Some(slot) = self.slot(hash) else {
            return;
        };
        let version = slot.version.load(Ordering::Relaxed);
        if version & 1 == 1
            || slot
                .version
                .compare_exchange(version, version + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let nanos = u64::from(verdict.expiry.timestamp_subsec_nanos());
        let meta = token.len() as u64
            | (verdict.id.start as u64) << 11
            | (id_len as u64) << 22
            | u64::from(verdict.key_type == KeyType::Secondary) << 29
            | u64::from(verdict.format == Format::Uid) << 30
            | nanos << 31;
        slot.tag.store(hash, Ordering::Relaxed);
        slot.meta.store(meta, Ordering::Relaxed);
        slot.seconds
            .store(verdict.expiry.timestamp() as u64, Ordering::Relaxed);
        for (chunk, stored) in token.chunks(8).zip(slot.words.iter()) {
            stored.store(word(chunk), Ordering::Relaxed);
        }
        slot.version.store(version + 2, Ordering::Release);
    }
}

impl Cache {
    /// Empties every slot and zeroes what it held (the tokens are bearer credentials), keeping
    /// the table: `&mut`, so no reader is in it. Atomic stores, which the compiler does not drop
    /// as dead even before the table is freed.
    pub(crate) fn clear(&mut self) {
        for slot in self.slots.iter() {
            slot.tag.store(0, Ordering::Relaxed);
            slot.meta.store(0, Ordering::Relaxed);
            slot.seconds.store(0, Ordering::Relaxed);
            for word in &slot.words {
                word.store(0, Ordering::Relaxed);
            }
        }
        fence(Ordering::SeqCst);
    }
}

impl Drop for Cache {
    /// Zeroes every slot: the tokens are bearer credentials.
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(id: std::ops::Range<usize>) -> Verdict {
        Verdict {
            id,
            key_type: KeyType::Secondary,
            format: Format::Uid,
            expiry: DateTime::from_timestamp(1_800_000_000, 123_456_700).unwrap(),
        }
    }

    #[test]
    fn stores_and_finds_exact_bytes_only() {
        let cache = Cache::new(100);
        assert_eq!(cache.capacity(), 128);
        let token = b"uid=gw1&ex=2027-01-15T08:00:00.1234567Z&sn=abc";
        let hash = cache.hash(token);
        assert_eq!(cache.get(token, hash), None);
        cache.put(token, hash, &verdict(4..7));
        assert_eq!(cache.get(token, hash), Some(verdict(4..7)));
        // One byte off, anywhere: another hash, and even under the same hash, no hit.
        let mut other = token.to_vec();
        for at in [0, 20, token.len() - 1] {
            other.clone_from(&token.to_vec());
            other[at] ^= 1;
            assert_eq!(cache.get(&other, cache.hash(&other)), None);
            assert_eq!(cache.get(&other, hash), None, "{at}");
        }
        // A prefix of the same bytes is another length.
        assert_eq!(cache.get(&token[..40], hash), None);
        // Too long to hold: never stored.
        let long = vec![b'a'; MAX_CACHED_LEN + 1];
        let h = cache.hash(&long);
        cache.put(&long, h, &verdict(0..3));
        assert_eq!(cache.get(&long, h), None);
    }

    #[test]
    fn a_new_token_takes_the_slot() {
        let cache = Cache::new(1);
        let (a, b) = (
            b"gw1&202701150800&aaaa".as_slice(),
            b"gw1&202701150800&bbbb".as_slice(),
        );
        let (ha, hb) = (cache.hash(a), cache.hash(b));
        cache.put(a, ha, &verdict(0..3));
        cache.put(b, hb, &verdict(0..3));
        assert_eq!(cache.get(a, ha), None);
        assert_eq!(cache.get(b, hb), Some(verdict(0..3)));
    }
}
