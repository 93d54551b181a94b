//! Reading the whole registry for a listing: the order (by id, with the
//! queue's positions) is taken first, in one pass under the shared lock;
//! the records are then copied in batches, each under the shared lock
//! again, so that a listing of 10,000 workers neither copies the registry
//! at once nor holds the lock while the caller builds its rows.

use super::locked::Locked;
use super::record::{record_with, WorkerRecord};
use super::slot::SlotState;
use crate::spec::Kind;

/// Workers copied per batch.
const BATCH: usize = 256;

/// One worker to list: its id, its slot, its place in the launch queue.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: i64,
    index: u32,
    queue_position: Option<u32>,
}

/// A listing in progress; see [`listing`].
#[derive(Debug)]
pub struct Listing {
    order: Vec<Entry>,
    next: usize,
}

/// Starts a listing of every worker the registry holds, by id.
pub fn listing() -> Listing {
    let Some(locked) = Locked::acquire(false) else {
        return Listing {
            order: Vec::new(),
            next: 0,
        };
    };
    let mut order = Vec::new();
    let mut queued = Vec::new();
    for (index, slot) in locked.slots().iter().enumerate() {
        if slot.state == SlotState::Free as u8 {
            continue;
        }
        if slot.state == SlotState::Queued as u8 {
            queued.push((slot.queue_seq, slot.id, order.len()));
        }
        order.push(Entry {
            id: slot.id,
            index: index as u32,
            queue_position: None,
        });
    }
    drop(locked);
    queued.sort_unstable();
    for (position, (_, _, at)) in queued.into_iter().enumerate() {
        order[at].queue_position = Some(position as u32 + 1);
    }
    order.sort_unstable_by_key(|e| e.id);
    Listing { order, next: 0 }
}

impl Listing {
    /// Replaces `out` with the next batch of records; false when the
    /// listing is done. A worker whose slot went to a newer one meanwhile
    /// is left out (the newer one was not there when the listing began).
    pub fn next_batch(&mut self, out: &mut Vec<WorkerRecord>) -> bool {
        out.clear();
        if self.next >= self.order.len() {
            return false;
        }
        let end = (self.next + BATCH).min(self.order.len());
        let batch = &self.order[self.next..end];
        self.next = end;
        let Some(locked) = Locked::acquire(false) else {
            return false;
        };
        for entry in batch {
            let slot = &locked.slots()[entry.index as usize];
            if slot.id != entry.id || slot.state == SlotState::Free as u8 {
                continue;
            }
            // The typed config is read only where the listing needs it (a
            // raw worker's type); the view shows the jsonb made at launch.
            let config = (slot.kind == Kind::Raw as u8).then(|| locked.text(slot.config));
            let jsonb = locked.text(slot.config_jsonb);
            let mut record = record_with(
                entry.index as usize,
                slot,
                config.as_deref(),
                &locked.text(slot.error),
                jsonb,
            );
            record.queue_position = entry.queue_position;
            out.push(record);
        }
        true
    }
}
