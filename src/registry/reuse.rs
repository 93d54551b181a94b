//! Which history entry a new worker takes when no slot is free: the
//! stopped dynamic worker, forgotten by the postmaster too, that stopped
//! longest ago, those that keep no result first and, among those that
//! do, the launching role's own first (see `reserve.rs`). Each slot's reuse key (its stop time, or `i64::MAX` when it
//! may not be reused; see `slot::reuse_key`) is kept beside the slots, and
//! the header keeps a short list of the smallest keys, so that a launch
//! into a full registry does not read 10,000 keys under the exclusive
//! lock: the list is made by one pass over the keys when it runs out (once
//! every `CANDIDATES` launches at most), and slots whose key changes are
//! added to it while they belong there.

/// How many of the smallest keys the list holds.
pub(super) const CANDIDATES: usize = 64;

/// The list. Every slot whose reuse key is at most `limit` is in
/// `entries` with that key (entries whose slot changed since are left in,
/// and skipped when met); `entries` is sorted by key.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidates {
    len: u32,
    limit: i64,
    entries: [(i64, u32); CANDIDATES],
}

impl Default for Candidates {
    /// An empty list that promises nothing: the first use makes it.
    fn default() -> Candidates {
        Candidates {
            len: 0,
            limit: i64::MIN,
            entries: [(0, 0); CANDIDATES],
        }
    }
}

impl Candidates {
    /// Slot `index`'s reuse key became `key` (under the exclusive lock).
    pub(super) fn changed(&mut self, index: usize, key: i64) {
        if key == i64::MAX || key > self.limit {
            return;
        }
        if self.len as usize == CANDIDATES {
            // Full: the largest entry goes, and the promise shrinks to
            // below its key.
            self.len -= 1;
            let (dropped, _) = self.entries[self.len as usize];
            self.limit = self.limit.min(dropped - 1);
            if key > self.limit {
                return;
            }
        }
        self.insert((key, index as u32));
    }

    fn insert(&mut self, entry: (i64, u32)) {
        let len = self.len as usize;
        let at = self.entries[..len].partition_point(|e| *e <= entry);
        self.entries.copy_within(at..len, at + 1);
        self.entries[at] = entry;
        self.len += 1;
    }

    /// Made again from every slot's key, one pass: the smallest keys.
    fn rebuild(&mut self, keys: &[i64]) {
        *self = Candidates::default();
        for (index, &key) in keys.iter().enumerate() {
            if key == i64::MAX {
                continue;
            }
            let len = self.len as usize;
            if len == CANDIDATES {
                if (key, index as u32) >= self.entries[len - 1] {
                    continue;
                }
                self.len -= 1;
            }
            self.insert((key, index as u32));
        }
        // Every key below the largest kept is kept; with room to spare,
        // every key is.
        self.limit = match self.len as usize {
            CANDIDATES => self.entries[CANDIDATES - 1].0 - 1,
            _ => i64::MAX - 1,
        };
    }
}

impl Candidates {
    /// Takes a slot out of the list, given every slot's key now: the first
    /// (smallest key) for which `prefer(slot, key)` holds, else the one
    /// with the smallest key; `None` when no slot may be reused. Entries
    /// whose slot changed since are dropped on the way.
    pub(super) fn take(
        &mut self,
        keys: &[i64],
        prefer: impl Fn(usize, i64) -> bool,
    ) -> Option<usize> {
        for attempt in 0..2 {
            let len = self.len as usize;
            let mut kept = 0;
            for at in 0..len {
                let (key, index) = self.entries[at];
                if key <= self.limit && keys[index as usize] == key {
                    self.entries[kept] = (key, index);
                    kept += 1;
                }
            }
            self.len = kept as u32;
            // Every slot whose key is at most `limit` is listed: the first
            // entry left has the smallest key of all.
            let chosen = self.entries[..kept]
                .iter()
                .position(|&(key, index)| prefer(index as usize, key))
                .or((kept > 0).then_some(0));
            if let Some(at) = chosen {
                let (_, index) = self.entries[at];
                self.entries.copy_within(at + 1..kept, at);
                self.len -= 1;
                return Some(index as usize);
            }
            // Ran out (or can no longer be trusted): made again, once.
            if attempt == 0 {
                self.rebuild(keys);
            }
        }
        None
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    /// A small random number generator (xorshift), for repeatable runs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below
        }
    }

    #[test]
    fn always_takes_the_smallest_key() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut keys = vec![i64::MAX; 500];
        let mut list = Candidates::default();
        let mut clock = 1_000i64;
        for _ in 0..20_000 {
            let index = rng.next(keys.len() as u64) as usize;
            match rng.next(4) {
                // A worker stops now, or one stopped earlier becomes
                // reusable (its reaping seen late), or a slot is taken.
                0 | 1 => {
                    clock += 1;
                    keys[index] = clock;
                }
                2 => keys[index] = clock - rng.next(1_000) as i64,
                _ => keys[index] = i64::MAX,
            }
            list.changed(index, keys[index]);
            if rng.next(3) == 0 {
                let smallest = keys
                    .iter()
                    .enumerate()
                    .filter(|(_, &k)| k != i64::MAX)
                    .min_by_key(|&(i, &k)| (k, i));
                let taken = list.take(&keys, |_, _| false);
                match smallest {
                    None => assert_eq!(taken, None),
                    Some((_, &key)) => {
                        let taken = taken.expect("a reusable slot is found");
                        assert_eq!(keys[taken], key, "the smallest key is taken");
                        keys[taken] = i64::MAX;
                        list.changed(taken, i64::MAX);
                    }
                }
            }
        }
    }

    #[test]
    fn takes_the_first_preferred_else_the_smallest() {
        let mut keys = vec![30, 10, 20, 40, i64::MAX];
        let mut list = Candidates::default();
        for (index, &key) in keys.iter().enumerate() {
            list.changed(index, key);
        }
        // Slot 3 and slot 2 preferred: the smaller key of the two.
        let prefer = |index: usize, _: i64| index == 3 || index == 2;
        assert_eq!(list.take(&keys, prefer), Some(2));
        keys[2] = i64::MAX;
        assert_eq!(list.take(&keys, prefer), Some(3));
        keys[3] = i64::MAX;
        // None preferred left: the smallest key.
        assert_eq!(list.take(&keys, prefer), Some(1));
        keys[1] = i64::MAX;
        // A slot whose key changed since it was listed is skipped.
        keys[0] = 35;
        list.changed(0, 35);
        assert_eq!(list.take(&keys, |_, key| key == 30), Some(0));
        keys[0] = i64::MAX;
        assert_eq!(list.take(&keys, prefer), None);
    }
}
