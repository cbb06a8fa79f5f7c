//! The simulated log: an [`EventLog`] whose durability point the simulator moves.
//!
//! The engine's own in-memory logs do not fit: `MemLog` is durable as soon as an event is
//! appended, so a crash could lose nothing, and the fault-injecting `FaultyFileBackend`
//! (engine `testing::faults`) sits under a real redb file and its writer thread, which is
//! neither single-threaded nor cheap enough to run thousands of crashes a second. So this log
//! keeps three parts: a `MemLog` that is the disk's events (recovery reads them exactly as it
//! reads any log), the newest checkpoint as the bytes a durable log stores
//! (`log::encoding::encode_checkpoint`, so a restart sees only what the on-disk format
//! keeps), and a volatile tail of events appended but not yet synced.
//!
//! # Fault model
//! - Appends are never durable by themselves; a sync ([`SimLog::sync`], or `wait_durable`
//!   from inside the engine, as a checkpoint does) moves the whole tail to the disk.
//! - [`SimLog::crash`] drops the tail: whatever was not synced is lost, as after a power cut.
//! - [`SimLog::fail_next_sync`]: the next sync fails and the log is dead: every later call
//!   fails until the simulator crashes and restarts the process (redb's `PreviousIo`), and
//!   the restart loses the tail (Linux may drop the dirty pages of a failed fsync).
//!
//! Every method runs on the simulator's thread (recovery's reader thread only reads), so the
//! one mutex is never contended; it is there because `EventLog` is `Send + Sync`.

use inv_engine::log::encoding::{decode_checkpoint, encode_checkpoint};
use inv_engine::{Checkpoint, Event, EventLog, LogError, Lsn, MemLog};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
pub struct SimLog {
    /// The durable events, which survive a crash.
    disk: MemLog,
    /// The newest checkpoint, encoded; durable once written.
    checkpoint: Mutex<Option<(Lsn, Vec<u8>)>>,
    state: Mutex<Volatile>,
}

#[derive(Default)]
struct Volatile {
    /// Appended, not yet synced, in LSN order right after the disk's last event.
    tail: Vec<Arc<Event>>,
    fail_next_sync: bool,
    /// Why the log died, if it did; cleared by a crash (the restart).
    dead: Option<String>,
}

impl SimLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, Volatile> {
        // A panic elsewhere on the simulator's thread ends the run; the state stays readable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every appended event durable (an fsync). Fails, losing the tail and killing the
    /// log, if a failure was armed.
    pub fn sync(&self) -> Result<(), LogError> {
        let mut state = self.state();
        if let Some(why) = &state.dead {
            return Err(LogError::Io(why.clone()));
        }
        if state.fail_next_sync {
            // The tail stays until the restart drops it: a dead log serves nothing meanwhile.
            state.fail_next_sync = false;
            let why = "injected fault: sync failed, unsynced events lost".to_owned();
            state.dead = Some(why.clone());
            return Err(LogError::Io(why));
        }
        for event in state.tail.drain(..) {
            self.disk
                .append(&event)
                .expect("the tail continues the disk in LSN order");
        }
        Ok(())
    }

    /// Arms a failure of the next sync.
    pub fn fail_next_sync(&self) {
        self.state().fail_next_sync = true;
    }

    /// A power cut and restart: the tail is lost and the log lives again. Returns how many
    /// events were lost.
    pub fn crash(&self) -> usize {
        let mut state = self.state();
        let lost = state.tail.len();
        *state = Volatile::default();
        lost
    }

    pub fn is_dead(&self) -> bool {
        self.state().dead.is_some()
    }

    /// Events appended so far, durable or not.
    pub fn head_lsn(&self) -> Lsn {
        let state = self.state();
        match state.tail.last() {
            Some(event) => event.lsn,
            None => self.disk.durable_lsn(),
        }
    }

    /// The event with `lsn`, durable or not.
    pub fn event(&self, lsn: Lsn) -> Option<Arc<Event>> {
        self.read_from(lsn, 1).ok()?.into_iter().next()
    }
}

impl EventLog for SimLog {
    fn append(&self, event: &Arc<Event>) -> Result<(), LogError> {
        let mut state = self.state();
        if let Some(why) = &state.dead {
            return Err(LogError::Io(why.clone()));
        }
        let last = state
            .tail
            .last()
            .map_or(self.disk.durable_lsn(), |event| event.lsn);
        if event.lsn != last.next() {
            return Err(LogError::OutOfOrder {
                expected: last.next(),
                got: event.lsn,
            });
        }
        state.tail.push(Arc::clone(event));
        Ok(())
    }

    /// The engine waits for durability only inside a checkpoint: that wait is a sync.
    fn wait_durable(&self, lsn: Lsn) -> Result<(), LogError> {
        if lsn <= self.disk.durable_lsn() && !self.is_dead() {
            return Ok(());
        }
        self.sync()
    }

    fn durable_lsn(&self) -> Lsn {
        self.disk.durable_lsn()
    }

    fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Arc<Event>>, LogError> {
        let mut events = self.disk.read_from(from, max)?;
        if events.len() < max {
            let state = self.state();
            let start = from.max(self.disk.durable_lsn().next());
            events.extend(
                state
                    .tail
                    .iter()
                    .filter(|e| e.lsn >= start)
                    .take(max - events.len())
                    .cloned(),
            );
        }
        Ok(events)
    }

    fn health(&self) -> Result<(), LogError> {
        match &self.state().dead {
            Some(why) => Err(LogError::Io(why.clone())),
            None => Ok(()),
        }
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        let stored = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        stored
            .as_ref()
            .map(|(_, bytes)| decode_checkpoint(bytes))
            .transpose()
    }

    /// Stored at once (a checkpoint write is its own synced write); refused by a dead log and
    /// ahead of the durable events, ignored if not newer than the stored one (as `MemLog`).
    fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        self.health()?;
        let durable = self.disk.durable_lsn();
        if checkpoint.next_lsn > durable.next() {
            return Err(LogError::OutOfOrder {
                expected: durable.next(),
                got: checkpoint.next_lsn,
            });
        }
        let bytes = encode_checkpoint(checkpoint)?;
        let mut stored = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        if stored
            .as_ref()
            .is_none_or(|(next_lsn, _)| *next_lsn < checkpoint.next_lsn)
        {
            *stored = Some((checkpoint.next_lsn, bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inv_engine::{Adjust, AdjustmentId, Fact, Location, Sku};

    fn event(lsn: u64) -> Arc<Event> {
        Arc::new(Event {
            lsn: Lsn(lsn),
            at_ms: 1_000 + lsn,
            by: None,
            fact: Fact::StockAdjusted(Adjust {
                adjustment_id: AdjustmentId::from(format!("a{lsn}").as_str()),
                sku: Sku::from("s"),
                location: Location::from("l"),
                delta: 1,
                reason: "test".into(),
            }),
        })
    }

    /// The fault model in the module doc: appends are volatile until a sync, a crash loses
    /// the volatile tail, and the next append continues after the durable prefix.
    #[test]
    fn a_crash_loses_exactly_the_unsynced_tail() {
        let log = SimLog::new();
        for lsn in 1..=3 {
            log.append(&event(lsn)).expect("in order");
        }
        log.sync().expect("healthy");
        for lsn in 4..=5 {
            log.append(&event(lsn)).expect("in order");
        }
        assert_eq!(log.durable_lsn(), Lsn(3));
        assert_eq!(log.head_lsn(), Lsn(5));
        assert_eq!(log.read_from(Lsn(2), 10).expect("reads").len(), 4);
        assert_eq!(log.crash(), 2);
        assert_eq!(log.head_lsn(), Lsn(3));
        assert!(log.event(Lsn(4)).is_none());
        log.append(&event(4))
            .expect("continues after the durable prefix");
    }

    /// A failed sync kills the log until the restart, which loses the tail.
    #[test]
    fn a_failed_sync_kills_the_log_until_the_restart() {
        let log = SimLog::new();
        log.append(&event(1)).expect("in order");
        log.fail_next_sync();
        assert!(log.sync().is_err());
        assert!(log.is_dead());
        assert!(log.append(&event(2)).is_err());
        assert!(log.health().is_err());
        assert_eq!(log.crash(), 1);
        assert!(!log.is_dead());
        assert_eq!(log.durable_lsn(), Lsn(0));
        log.append(&event(1)).expect("a fresh start");
        log.sync().expect("healthy again");
        assert_eq!(log.durable_lsn(), Lsn(1));
    }
}
