//! One deadline queue for every session: a min-heap with lazy deletion.
//! Each wake costs O(log n) per expired entry, whatever the session count.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The deadline each slot currently wants; heap entries that differ are stale.
    armed: Vec<Option<Instant>>,
}

impl TimerQueue {
    pub fn with_slots(n: usize) -> Self {
        TimerQueue {
            heap: BinaryHeap::with_capacity(n),
            armed: vec![None; n],
        }
    }

    /// Makes room for slots added since creation.
    pub fn ensure_slots(&mut self, n: usize) {
        if self.armed.len() < n {
            self.armed.resize(n, None);
        }
    }

    /// Records the slot's wanted deadline; a no-op when unchanged.
    pub fn arm(&mut self, slot: usize, at: Option<Instant>) {
        if self.armed[slot] == at {
            return;
        }
        self.armed[slot] = at;
        if let Some(t) = at {
            self.heap.push(Reverse((t, slot)));
            if self.heap.len() > 2 * self.armed.len() + 1024 {
                self.compact();
            }
        }
    }

    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((t, slot))) = self.heap.peek().copied() {
            if self.armed[slot] == Some(t) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Pops one slot whose deadline has passed.
    pub fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        while let Some(Reverse((t, slot))) = self.heap.peek().copied() {
            if t > now {
                return None;
            }
            self.heap.pop();
            if self.armed[slot] == Some(t) {
                self.armed[slot] = None;
                return Some(slot);
            }
        }
        None
    }

    fn compact(&mut self) {
        self.heap = self
            .armed
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| Reverse((t, i))))
            .collect();
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expires_in_order_and_skips_rearmed_entries() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = TimerQueue::with_slots(3);
        q.arm(0, Some(t0 + 3 * s));
        q.arm(1, Some(t0 + s));
        q.arm(2, Some(t0 + 2 * s));
        q.arm(1, Some(t0 + 5 * s)); // re-armed later: the 1 s entry is stale
        assert_eq!(q.next_deadline(), Some(t0 + 2 * s));
        assert_eq!(q.pop_expired(t0 + 4 * s), Some(2));
        assert_eq!(q.pop_expired(t0 + 4 * s), Some(0));
        assert_eq!(q.pop_expired(t0 + 4 * s), None);
        assert_eq!(q.next_deadline(), Some(t0 + 5 * s));
        q.arm(1, None);
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn stale_entries_are_bounded() {
        let t0 = Instant::now();
        let mut q = TimerQueue::with_slots(2);
        for i in 0..10_000u64 {
            q.arm((i % 2) as usize, Some(t0 + Duration::from_millis(i)));
        }
        assert!(q.heap_len() <= 2 * 2 + 1024 + 1, "{}", q.heap_len());
        assert_eq!(q.pop_expired(t0 + Duration::from_secs(100)), Some(0));
        assert_eq!(q.pop_expired(t0 + Duration::from_secs(100)), Some(1));
    }
}
