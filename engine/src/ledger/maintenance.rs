//! Maintenance: the expiry sweep, which records an expiry event for each lapsed hold, and the
//! purge, which forgets what is past the retention window (lookups already ignore it, so a
//! purge only frees memory).

use super::Ledger;
use crate::command::{Command, Expire};
use crate::error::SubmitError;
use crate::outcome::Refusal;
use crate::sync::lock;
use crate::types::*;

impl Ledger {
    /// Expires up to `batch_max` holds whose TTL has passed at `now_ms`, each as its own
    /// event. Returns how many were expired.
    pub fn expire_due(&self, now_ms: u64, batch_max: usize) -> Result<usize, SubmitError> {
        let mut due: Vec<ReservationId> = Vec::new();
        for shard in self.holds.iter() {
            let remaining = batch_max - due.len();
            if remaining == 0 {
                break;
            }
            let shard = lock(shard);
            due.extend(
                shard
                    .expiry
                    .range(..=(now_ms, Lsn(u64::MAX)))
                    .take(remaining)
                    .map(|(_, &slot)| shard.entries.at(slot).id.clone()),
            );
        }
        let mut expired = 0;
        for reservation_id in due {
            match self.submit(Command::Expire(Expire { reservation_id }), now_ms)? {
                Ok(_) => expired += 1,
                // Committed, released or extended since we looked (and perhaps forgotten since,
                // with a short retention): nothing to expire.
                Err(Refusal::HoldNotLapsed(_) | Refusal::ReservationNotFound(_)) => {}
                Err(refusal) => unreachable!("the expiry sweep was refused: {refusal}"),
            }
        }
        Ok(expired)
    }

    /// Forgets idempotency keys, ended holds and fully disposed returns older than the
    /// retention window. Lookups already ignore them, so this only frees memory.
    pub fn purge(&self, now_ms: u64) -> usize {
        // Never purge past the latest event time: digests judge retention as of that time.
        let as_of_ms = now_ms.min(lock(&self.sequencer).last_at_ms);
        let mut purged = 0;
        for shard in self.keys.iter() {
            let mut shard = lock(shard);
            let before = shard.records.len();
            shard
                .records
                .retain(|_, r| self.record_retained(r, as_of_ms));
            purged += before - shard.records.len();
        }
        for shard in self.holds.iter() {
            let mut shard = lock(shard);
            shard.entries.retain(|entry| {
                purged +=
                    entry.purge(|at_ms, rejection| self.record_kept(at_ms, rejection, as_of_ms));
                !entry.is_empty()
            });
        }
        let mut returns = lock(&self.returns);
        let before = returns.by_id.len();
        returns
            .by_id
            .retain(|_, r| r.in_quarantine() || self.retained(r.at_ms, as_of_ms));
        purged + before - returns.by_id.len()
    }
}
