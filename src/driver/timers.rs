//! One deadline queue for every session: a hashed timing wheel whose tick is
//! the loop's timer grid.
//!
//! Why not a binary heap: at 9k sessions every probe pushed two entries and
//! popped two (one stale), each walking a root-to-leaf path through a heap of
//! ~27k entries — a handful of cold pages per probe, and cold pages are what
//! a probe costs on a VM. Here a deadline is appended to the bucket of its
//! tick; deadlines armed in one wake land in the same few buckets, and a wake
//! drains the buckets of the ticks that passed, in order of memory. Cost per
//! wake: the expired entries plus the buckets passed, whatever the session
//! count.
//!
//! Deadlines round up to the grid (a timer never fires early). Re-arming a
//! slot leaves its old entry behind; entries are checked against the slot's
//! current tick and dropped when stale, and the wheel is rebuilt when stale
//! entries could outgrow the live ones.

use std::time::Duration;

use crate::clock::Instant;

/// Buckets in the wheel; deadlines further than this many ticks away wait
/// in their bucket for the following turn(s). 1024 ticks of the default
/// 25 ms grid cover 2.5 default ping intervals.
const BUCKETS: usize = 1024;
const MASK: u64 = BUCKETS as u64 - 1;
const UNARMED: u64 = u64::MAX;
/// Drained buckets' vectors kept for the next buckets to fill, so that a
/// wake's re-arms do not allocate and regrow them: at most this many, of
/// at most `SPARE_CAPACITY` entries each (32 KiB in all).
const SPARES: usize = 16;
const SPARE_CAPACITY: usize = 128;

#[derive(Clone, Copy, Debug)]
struct Entry {
    tick: u64,
    slot: usize,
}

pub struct TimerQueue {
    epoch: Instant,
    grid_ns: u64,
    buckets: Vec<Vec<Entry>>,
    /// One bit per bucket: set while it holds entries.
    occupied: Vec<u64>,
    /// The first tick whose bucket has not been drained yet.
    cursor: u64,
    /// Deadlines already passed, waiting to be handed out.
    due: Vec<Entry>,
    /// The tick each slot currently wants; entries that differ are stale.
    armed: Vec<u64>,
    /// Entries in buckets, stale ones included.
    entries: usize,
    /// Emptied bucket vectors for reuse (see `SPARES`).
    spares: Vec<Vec<Entry>>,
}

impl TimerQueue {
    pub fn new(slots: usize, epoch: Instant, grid: Duration) -> Self {
        TimerQueue {
            epoch,
            grid_ns: grid_ns(grid),
            buckets: vec![Vec::new(); BUCKETS],
            occupied: vec![0; BUCKETS / 64],
            cursor: 0,
            due: Vec::new(),
            armed: vec![UNARMED; slots],
            entries: 0,
            spares: Vec::with_capacity(SPARES),
        }
    }

    /// The tick length.
    pub fn grid(&self) -> Duration {
        Duration::from_nanos(self.grid_ns)
    }

    /// Makes room for slots added since creation.
    pub fn ensure_slots(&mut self, n: usize) {
        if self.armed.len() < n {
            self.armed.resize(n, UNARMED);
        }
    }

    /// Changes the tick length (the grid follows the targets through
    /// reloads). Armed deadlines move to the first tick of the new grid at
    /// or after their old tick: still never early.
    pub fn set_grid(&mut self, grid: Duration) {
        let new_ns = grid_ns(grid);
        if new_ns == self.grid_ns {
            return;
        }
        let old_ns = self.grid_ns;
        let now_tick = self.cursor.saturating_sub(1);
        self.grid_ns = new_ns;
        self.cursor = (u128::from(now_tick) * u128::from(old_ns) / u128::from(new_ns)) as u64 + 1;
        for t in self.armed.iter_mut().filter(|t| **t != UNARMED) {
            *t = (u128::from(*t) * u128::from(old_ns)).div_ceil(u128::from(new_ns)) as u64;
        }
        self.rebuild();
    }

    /// Records the slot's wanted deadline; a no-op when its tick is unchanged.
    pub fn arm(&mut self, slot: usize, at: Option<Instant>) {
        let tick = at.map_or(UNARMED, |t| self.tick_of(t));
        if self.armed[slot] == tick {
            return;
        }
        self.armed[slot] = tick;
        if tick == UNARMED {
            return;
        }
        let e = Entry { tick, slot };
        if tick < self.cursor {
            self.due.push(e); // its tick has already been drained
            return;
        }
        self.insert(e);
        if self.entries > 2 * self.armed.len() + 1024 {
            self.rebuild();
        }
    }

    /// When the loop must wake next: the first tick whose bucket holds a
    /// live entry (or now, when some are due). It may be early for an entry
    /// a whole turn away; never late.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        if self.due.iter().any(|e| self.armed[e.slot] == e.tick) {
            return Some(self.instant_of(self.cursor.saturating_sub(1)));
        }
        self.due.clear();
        let start = self.cursor;
        let mut offset = 0u64;
        while let Some(d) = self.next_occupied(start + offset, BUCKETS as u64 - offset) {
            let tick = start + offset + d;
            let b = (tick & MASK) as usize;
            let armed = &self.armed;
            let before = self.buckets[b].len();
            self.buckets[b].retain(|e| armed[e.slot] == e.tick);
            if self.settle(b, before) > 0 {
                return Some(self.instant_of(tick));
            }
            offset += d + 1;
        }
        None
    }

    /// Pops one slot whose deadline has passed.
    pub fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        let now_tick = self.now_tick(now);
        if self.cursor <= now_tick {
            self.drain_until(now_tick);
        }
        while let Some(e) = self.due.pop() {
            if self.armed[e.slot] == e.tick {
                self.armed[e.slot] = UNARMED;
                return Some(e.slot);
            }
        }
        if self.due.capacity() > 1024 {
            self.due = Vec::new(); // the peak of a connect storm
        }
        None
    }

    /// Moves every live entry with a tick up to `now_tick` to `due`.
    fn drain_until(&mut self, now_tick: u64) {
        let span = now_tick - self.cursor + 1;
        let mut offset = 0u64;
        let limit = span.min(BUCKETS as u64);
        while let Some(d) = self.next_occupied(self.cursor + offset, limit - offset) {
            let b = ((self.cursor + offset + d) & MASK) as usize;
            let (armed, due) = (&self.armed, &mut self.due);
            let before = self.buckets[b].len();
            self.buckets[b].retain(|e| {
                if armed[e.slot] != e.tick {
                    false
                } else if e.tick <= now_tick {
                    due.push(*e);
                    false
                } else {
                    true // a later turn of the wheel
                }
            });
            self.settle(b, before);
            offset += d + 1;
        }
        self.cursor = now_tick + 1;
    }

    /// Accounts for entries a pass over bucket `b` removed (it held
    /// `before`); returns how many are left.
    fn settle(&mut self, b: usize, before: usize) -> usize {
        let left = self.buckets[b].len();
        self.entries -= before - left;
        // Drained buckets give their memory back: kept, a thousand
        // buckets' spare capacity outweighed the sessions' own timers.
        // A few go to the spares, for the buckets this wake's re-arms fill.
        let bucket = &mut self.buckets[b];
        if left == 0 {
            let emptied = std::mem::take(bucket);
            if self.spares.len() < SPARES && emptied.capacity() <= SPARE_CAPACITY {
                self.spares.push(emptied);
            }
            self.clear_bit(b);
        } else if left < bucket.capacity() / 4 {
            bucket.shrink_to(left * 2);
        }
        left
    }

    /// Ticks from `from` (within `within` of them) to the next occupied
    /// bucket, by the bitmap.
    fn next_occupied(&self, from: u64, within: u64) -> Option<u64> {
        let mut d = 0u64;
        while d < within {
            let pos = ((from + d) & MASK) as usize;
            let word = self.occupied[pos / 64] >> (pos % 64);
            if word != 0 {
                let found = d + u64::from(word.trailing_zeros());
                return (found < within).then_some(found);
            }
            d += 64 - (pos % 64) as u64;
        }
        None
    }

    fn insert(&mut self, e: Entry) {
        let b = (e.tick & MASK) as usize;
        let bucket = &mut self.buckets[b];
        if bucket.capacity() == 0 {
            if let Some(spare) = self.spares.pop() {
                *bucket = spare;
            }
        }
        bucket.push(e);
        self.occupied[b / 64] |= 1 << (b % 64);
        self.entries += 1;
    }

    fn clear_bit(&mut self, b: usize) {
        self.occupied[b / 64] &= !(1 << (b % 64));
    }

    /// Drops every stale entry: one entry per armed slot remains.
    fn rebuild(&mut self) {
        for b in &mut self.buckets {
            *b = Vec::new();
        }
        self.occupied.fill(0);
        self.entries = 0;
        self.due.clear();
        for slot in 0..self.armed.len() {
            let tick = self.armed[slot];
            if tick == UNARMED {
                continue;
            }
            let e = Entry { tick, slot };
            if tick < self.cursor {
                self.due.push(e);
            } else {
                self.insert(e);
            }
        }
    }

    /// The first tick at or after `t`.
    fn tick_of(&self, t: Instant) -> u64 {
        t.nanos_since(self.epoch).div_ceil(self.grid_ns).min(UNARMED - 1)
    }

    /// The last tick at or before `now`.
    fn now_tick(&self, now: Instant) -> u64 {
        (now.nanos_since(self.epoch) / self.grid_ns).min(UNARMED - 1)
    }

    fn instant_of(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_nanos(tick.saturating_mul(self.grid_ns))
    }

    #[cfg(test)]
    fn stored_entries(&self) -> usize {
        self.entries + self.due.len()
    }
}

fn grid_ns(grid: Duration) -> u64 {
    (grid.as_nanos() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(q: &mut TimerQueue, now: Instant) -> Vec<usize> {
        let mut v: Vec<usize> = std::iter::from_fn(|| q.pop_expired(now)).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn expires_at_the_tick_and_skips_rearmed_entries() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = TimerQueue::new(3, t0, 10 * MS);
        q.arm(0, Some(t0 + 3 * s));
        q.arm(1, Some(t0 + s));
        q.arm(2, Some(t0 + 2 * s));
        q.arm(1, Some(t0 + 5 * s)); // re-armed later: the 1 s entry is stale
        assert_eq!(q.next_deadline(), Some(t0 + 2 * s));
        assert_eq!(q.pop_expired(t0 + 2 * s - MS), None, "never early");
        assert_eq!(drain(&mut q, t0 + 4 * s), vec![0, 2]);
        assert_eq!(q.next_deadline(), Some(t0 + 5 * s));
        q.arm(1, None);
        assert_eq!(q.next_deadline(), None);
        assert_eq!(q.pop_expired(t0 + 10 * s), None);
    }

    #[test]
    fn deadlines_round_up_to_the_grid_and_never_fire_early() {
        let t0 = Instant::now();
        let grid = 10 * MS;
        for us in (1..50_000u64).step_by(777) {
            let mut q = TimerQueue::new(1, t0, grid);
            let t = t0 + Duration::from_micros(us);
            q.arm(0, Some(t));
            let wake = q.next_deadline().expect("armed");
            assert!(wake >= t && wake - t < grid, "{us} µs -> {:?}", wake - t0);
            assert_eq!(q.pop_expired(wake - Duration::from_nanos(1)), None);
            assert_eq!(q.pop_expired(wake), Some(0));
        }
    }

    #[test]
    fn a_deadline_already_passed_fires_at_once() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(2, t0, 10 * MS);
        q.arm(0, Some(t0 + 20 * MS));
        let now = t0 + 30 * MS;
        assert_eq!(q.pop_expired(now), Some(0));
        // Armed while handling that wake, for a moment already drained.
        q.arm(1, Some(t0 + 25 * MS));
        assert!(q.next_deadline().is_some_and(|t| t <= now), "due now: no wait");
        assert_eq!(q.pop_expired(now), Some(1));
        assert_eq!(q.pop_expired(now), None);
    }

    #[test]
    fn deadlines_beyond_one_turn_wait_for_their_turn() {
        let t0 = Instant::now();
        let grid = MS;
        let turn = grid * BUCKETS as u32;
        let mut q = TimerQueue::new(2, t0, grid);
        q.arm(0, Some(t0 + turn + 5 * MS)); // same bucket as 5 ms
        q.arm(1, Some(t0 + 5 * MS));
        assert_eq!(drain(&mut q, t0 + 6 * MS), vec![1]);
        assert_eq!(q.pop_expired(t0 + turn), None);
        assert_eq!(q.pop_expired(t0 + turn + 5 * MS), Some(0));
        // A loop that slept for several turns still finds everything.
        q.arm(0, Some(t0 + 3 * turn + 7 * MS));
        q.arm(1, Some(t0 + 4 * turn));
        assert_eq!(drain(&mut q, t0 + 9 * turn), vec![0, 1]);
    }

    #[test]
    fn stale_entries_are_bounded() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(2, t0, MS);
        for i in 0..100_000u64 {
            q.arm((i % 2) as usize, Some(t0 + Duration::from_millis(i)));
        }
        assert!(q.stored_entries() <= 2 * 2 + 1024 + 1, "{}", q.stored_entries());
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(1000)), vec![0, 1]);
    }

    #[test]
    fn a_new_grid_keeps_every_deadline_and_never_fires_early() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(3, t0, 10 * MS);
        q.arm(0, Some(t0 + 33 * MS));
        q.arm(1, Some(t0 + 2 * MS));
        assert_eq!(q.pop_expired(t0 + 15 * MS), Some(1));
        q.set_grid(Duration::from_micros(1500));
        q.arm(2, Some(t0 + 20 * MS));
        assert_eq!(q.pop_expired(t0 + 19 * MS), None);
        assert_eq!(q.pop_expired(t0 + 21 * MS), Some(2));
        // 33 ms was due at 40 ms on the old grid: 40.5 ms on the new one.
        assert_eq!(q.pop_expired(t0 + 40 * MS), None, "never earlier than the old tick");
        assert_eq!(q.pop_expired(t0 + 41 * MS), Some(0));
    }

    #[test]
    fn matches_a_naive_model_under_random_arming() {
        // A deterministic pseudo-random walk against a plain list of deadlines.
        let t0 = Instant::now();
        let grid = 3 * MS;
        let n = 50;
        let mut q = TimerQueue::new(n, t0, grid);
        let mut model: Vec<Option<Instant>> = vec![None; n];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut now = t0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 4 {
                0 | 1 => {
                    let slot = (x >> 8) as usize % n;
                    let at = (x >> 16) % 4 != 0;
                    let t = now + Duration::from_micros((x >> 24) % 30_000_000);
                    q.arm(slot, at.then_some(t));
                    model[slot] = at.then_some(t);
                }
                2 => now += Duration::from_micros((x >> 8) % 50_000),
                _ => {
                    let fired = drain(&mut q, now);
                    for &s in &fired {
                        let t = model[s].expect("fired an unarmed slot");
                        assert!(t <= now, "fired early");
                        model[s] = None;
                    }
                    for (s, t) in model.iter().enumerate() {
                        if let Some(t) = t {
                            // Anything a whole grid step in the past must have fired.
                            assert!(*t + grid > now, "slot {s} missed");
                        }
                    }
                    if let Some(next) = q.next_deadline() {
                        let earliest = model.iter().flatten().min().copied();
                        assert!(earliest.is_some_and(|e| next <= e + grid), "next deadline late");
                    }
                }
            }
        }
    }

    #[test]
    fn drained_buckets_are_reused_and_their_spares_stay_bounded() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(20_000, t0, 10 * MS);
        // 40 ticks of 100 deadlines (kept when drained) and 20 of 300
        // (too large to keep).
        for slot in 0..10_000 {
            let tick = if slot < 4000 {
                slot / 100
            } else {
                40 + (slot - 4000) / 300
            };
            q.arm(slot, Some(t0 + (tick as u32 + 1) * 10 * MS));
        }
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(1)).len(), 10_000);
        assert_eq!(q.spares.len(), SPARES);
        assert!(q.spares.iter().all(|v| v.is_empty() && v.capacity() <= SPARE_CAPACITY));
        // The next bucket to fill takes a spare: no allocation, no regrowth.
        q.arm(0, Some(t0 + Duration::from_secs(2)));
        assert_eq!(q.spares.len(), SPARES - 1);
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(3)), vec![0]);
    }
}
