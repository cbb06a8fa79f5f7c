//! The writer thread: it takes events and checkpoints off the channel in order, gathers events
//! into batches, commits each batch as records at the end of the events table (group commit),
//! makes commits durable (an fsync per batch in `Sync` mode, a flush within the interval in
//! `Async` mode), and drives checkpoints through staging, switch and sweep (`checkpoint.rs`
//! says what those write). Every failure it returns is the log's failure.

use super::checkpoint::{CheckpointWrite, Checkpoints, Fail, Staging, write_switch};
use super::layout::{EVENTS, RECORD_BYTES_TARGET};
use super::shared::{Shared, lock};
use super::{Durability, RedbLogOptions};
use crate::event::Event;
use crate::log::encoding;
use crate::log::stats::nanos;
use ::redb::{Database, WriteTransaction};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What the writer thread is asked to do, in order.
pub(super) enum Message {
    Event(Arc<Event>),
    Checkpoint(CheckpointWrite),
}

/// How long, in `Sync` mode, the writer keeps gathering a batch (yielding in between) while it
/// holds fewer events than the last commit woke waiters.
const GATHER_MAX: Duration = Duration::from_micros(100);

pub(super) struct Writer {
    db: Arc<Database>,
    receiver: Receiver<Message>,
    shared: Arc<Shared>,
    durability: Durability,
    batch_events_max: usize,
    /// The LSN the next written event must have.
    next_lsn: u64,
    batch: Vec<Arc<Event>>,
    buffers: Buffers,
    /// In `Async` mode, when the oldest commit not yet covered by an fsync was made.
    unflushed_since: Option<Instant>,
    /// Parked threads the last commit woke: most come straight back with their next command.
    /// A server's requests wait through the durable listener instead and are not counted, so
    /// there the writer does not wait to gather: waiting for them was measured to cost more CPU
    /// and throughput than the bigger batches saved (docs/durability.md, "One-off experiments").
    expected: usize,
    checkpoints: Checkpoints,
}

/// Reused buffers: one event's bytes, a record's framed events, the whole record.
struct Buffers {
    scratch: Vec<u8>,
    buffer: Vec<u8>,
    record: Vec<u8>,
}

/// What the writer found when it looked for work.
enum Next {
    Message(Message),
    /// It staged checkpoint chunks or flushed instead.
    Idle,
    /// Every sender is gone and the channel is drained.
    Closed,
}

/// Marks the writer gone when its thread ends, however it ends: waiters must never sleep on a
/// writer that will not wake them.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(format!(
                "{}: the log writer panicked",
                self.0.path.display()
            ));
        }
        self.0.writer_exited.store(true, Ordering::Release);
        self.0.wake(true);
    }
}

impl Writer {
    /// A writer for a file whose last event is `last_lsn`.
    pub(super) fn new(
        db: Arc<Database>,
        receiver: Receiver<Message>,
        shared: Arc<Shared>,
        options: &RedbLogOptions,
        last_lsn: u64,
        checkpoints: Checkpoints,
    ) -> Writer {
        Writer {
            db,
            receiver,
            shared,
            durability: options.durability,
            batch_events_max: options.batch_events_max,
            next_lsn: last_lsn + 1,
            batch: Vec::with_capacity(options.batch_events_max),
            buffers: Buffers {
                scratch: Vec::with_capacity(256),
                buffer: Vec::with_capacity(RECORD_BYTES_TARGET + 4096),
                record: Vec::with_capacity(RECORD_BYTES_TARGET + 4096),
            },
            unflushed_since: None,
            expected: 0,
            checkpoints,
        }
    }

    /// The thread's body: serves the channel until it closes or a write fails.
    pub(super) fn run(mut self) {
        let _exit = ExitGuard(Arc::clone(&self.shared));
        if let Err(failure) = self.serve() {
            // A checkpoint taken, or being staged, is answered by its dropped reply sender.
            self.shared.fail(failure);
        }
    }

    /// Takes messages in order until the channel closes (`Ok`) or a write fails (`Err`, the
    /// log's failure).
    fn serve(&mut self) -> Result<(), String> {
        loop {
            match self.next()? {
                Next::Message(Message::Event(event)) => self.write_batch(event)?,
                Next::Message(Message::Checkpoint(write)) => self.begin_checkpoint(write)?,
                Next::Idle => {}
                Next::Closed => return self.finish(),
            }
        }
    }

    /// Waits for the next message. While a checkpoint is being staged it never sleeps: with
    /// nothing queued it stages the next chunks instead. In `Async` mode it wakes at the flush
    /// deadline and flushes.
    fn next(&mut self) -> Result<Next, String> {
        if self.checkpoints.staging.is_some() {
            return match self.receiver.try_recv() {
                Ok(message) => Ok(Next::Message(message)),
                Err(TryRecvError::Empty) => {
                    self.step_checkpoint()?;
                    Ok(Next::Idle)
                }
                Err(TryRecvError::Disconnected) => Ok(Next::Closed),
            };
        }
        let received = match self.flush_deadline() {
            None => self
                .receiver
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => self.receiver.recv_deadline(deadline),
        };
        match received {
            Ok(message) => Ok(Next::Message(message)),
            Err(RecvTimeoutError::Timeout) => {
                self.flush()?;
                Ok(Next::Idle)
            }
            Err(RecvTimeoutError::Disconnected) => Ok(Next::Closed),
        }
    }

    /// Closed: everything queued has been committed. Finishes a staged checkpoint (its caller
    /// waits for it), deletes what the stored one covers, and makes everything durable.
    fn finish(&mut self) -> Result<(), String> {
        while self.checkpoints.staging.is_some() {
            self.step_checkpoint()?;
        }
        self.finish_sweep()?;
        if self.unflushed_since.is_some() {
            self.flush()?;
        }
        Ok(())
    }

    /// Gathers a batch starting with `first`, commits it, and then takes the checkpoint that
    /// ended the batch, if one did.
    fn write_batch(&mut self, first: Arc<Event>) -> Result<(), String> {
        self.batch.push(first);
        let checkpoint = self.gather();
        let fsync = match self.durability {
            Durability::Sync => true,
            Durability::Async { .. } => self
                .flush_deadline()
                .is_some_and(|deadline| Instant::now() >= deadline),
        };
        self.commit_batch(fsync)?;
        self.batch.clear();
        if let Some(checkpoint) = checkpoint {
            self.begin_checkpoint(checkpoint)?;
        }
        Ok(())
    }

    /// Adds the events queued behind the first to the batch, up to `batch_events_max`. In
    /// `Sync` mode, for up to [`GATHER_MAX`], it waits for as many as the last commit woke
    /// waiters, since most of them come straight back. A checkpoint ends the batch and is
    /// returned: it is staged after the events before it.
    fn gather(&mut self) -> Option<CheckpointWrite> {
        let gather_until = Instant::now() + GATHER_MAX;
        loop {
            while self.batch.len() < self.batch_events_max {
                match self.receiver.try_recv() {
                    Ok(Message::Event(event)) => self.batch.push(event),
                    Ok(Message::Checkpoint(write)) => return Some(write),
                    Err(_) => break,
                }
            }
            if self.batch.len() >= self.batch_events_max.min(self.expected)
                || self.durability != Durability::Sync
                || Instant::now() >= gather_until
            {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// A write transaction with `durability`; a failure is worded by the caller's `fail`.
    fn begin(
        &self,
        durability: ::redb::Durability,
        fail: Fail<'_>,
    ) -> Result<WriteTransaction, String> {
        let mut txn = self.db.begin_write().map_err(|e| fail("begin", &e))?;
        txn.set_durability(durability)
            .map_err(|e| fail("set durability", &e))?;
        Ok(txn)
    }

    fn flush_deadline(&self) -> Option<Instant> {
        match self.durability {
            Durability::Sync => None,
            Durability::Async { flush_interval_ms } => self
                .unflushed_since
                .map(|since| since + Duration::from_millis(flush_interval_ms)),
        }
    }

    /// Writes the batch in one transaction and commits it, with an fsync if `fsync`.
    fn commit_batch(&mut self, fsync: bool) -> Result<(), String> {
        let first = self.next_lsn;
        let count = self.batch.len() as u64;
        let last = first + count - 1;
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} of lsn {first}..={last} failed: {error}",
                self.shared.path.display()
            )
        };
        let started = Instant::now();
        let durability = if fsync {
            ::redb::Durability::Immediate
        } else {
            ::redb::Durability::None
        };
        let txn = self.begin(durability, &fail)?;
        insert_records(
            &txn,
            &self.batch,
            &mut self.next_lsn,
            &mut self.buffers,
            &fail,
        )?;
        // A checkpoint being staged rides along a few chunks at a time, so the batch waits
        // for those only, never for the whole checkpoint.
        let staging = self.checkpoints.staging.is_some();
        let staged = self.checkpoints.stage_chunks(&txn, &self.shared.path)?;
        self.checkpoints.sweep(&txn, &self.shared.path)?;
        let inserted = Instant::now();
        txn.commit().map_err(|e| fail("commit", &e))?;
        let committed = Instant::now();

        lock(&self.shared.stats).record_batch(
            count,
            nanos(inserted - started),
            nanos(committed - inserted),
            fsync,
        );
        if fsync {
            self.unflushed_since = None;
            self.expected = self.shared.advance(last, Some(last));
        } else {
            self.unflushed_since.get_or_insert(started);
            self.shared.advance(last, None);
        }
        if staging {
            self.note_checkpoint_commit(started);
        }
        if staged {
            self.switch_checkpoint()?;
        }
        Ok(())
    }

    /// Makes every committed batch durable with an empty fsync commit (`Async` mode).
    fn flush(&mut self) -> Result<(), String> {
        let last = self.next_lsn - 1;
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} of the flush up to lsn {last} failed: {error}",
                self.shared.path.display()
            )
        };
        let started = Instant::now();
        let txn = self.begin(::redb::Durability::Immediate, &fail)?;
        txn.commit().map_err(|e| fail("commit", &e))?;
        {
            let mut stats = lock(&self.shared.stats);
            stats.fsync_commits += 1;
            stats.commit_ns += nanos(started.elapsed());
        }
        self.unflushed_since = None;
        self.shared.advance(last, Some(last));
        Ok(())
    }

    /// Takes a checkpoint to stage: later commits write its chunks, a few at a time, and the
    /// last switches to it (see `switch_checkpoint`). `Err` is a log failure; a checkpoint
    /// refused for being ahead of the log is answered without failing the log.
    fn begin_checkpoint(&mut self, write: CheckpointWrite) -> Result<(), String> {
        // One at a time: a second caller's checkpoint waits for the first to be switched to.
        while self.checkpoints.staging.is_some() {
            self.step_checkpoint()?;
        }
        self.checkpoints.take(write, self.next_lsn);
        Ok(())
    }

    /// Stages the next chunks of the checkpoint in a commit of their own (no events were
    /// waiting), and switches to it once every chunk is in.
    fn step_checkpoint(&mut self) -> Result<(), String> {
        if self
            .flush_deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.flush()?;
        }
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} while staging a checkpoint failed: {error}",
                self.shared.path.display()
            )
        };
        let started = Instant::now();
        // Staged chunks are ignored until the switch, whose fsync commit persists them.
        let txn = self.begin(::redb::Durability::None, &fail)?;
        let staged = self.checkpoints.stage_chunks(&txn, &self.shared.path)?;
        self.checkpoints.sweep(&txn, &self.shared.path)?;
        txn.commit().map_err(|e| fail("commit", &e))?;
        self.note_checkpoint_commit(started);
        if staged {
            self.switch_checkpoint()?;
        }
        Ok(())
    }

    /// Deletes whatever stale chunks and records below the checkpoint are left, in one fsync
    /// commit (at close, when no submitter waits on it).
    fn finish_sweep(&mut self) -> Result<(), String> {
        if !self.checkpoints.has_leftovers() {
            return Ok(());
        }
        let last = self.next_lsn - 1;
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} at close failed: {error}",
                self.shared.path.display()
            )
        };
        let txn = self.begin(::redb::Durability::Immediate, &fail)?;
        if !self.checkpoints.sweep_rest(&txn, &fail)? {
            // Nothing was left: no commit (dropping the transaction aborts it).
            return Ok(());
        }
        txn.commit().map_err(|e| fail("commit", &e))?;
        self.unflushed_since = None;
        self.shared.advance(last, Some(last));
        Ok(())
    }

    fn note_checkpoint_commit(&self, started: Instant) {
        let mut stats = lock(&self.shared.stats);
        stats.checkpoint_commits += 1;
        stats.checkpoint_commit_ns_max =
            stats.checkpoint_commit_ns_max.max(nanos(started.elapsed()));
    }

    /// Switches to the fully staged checkpoint in one small fsync commit: the meta rows name
    /// its generation, and records wholly below its `next_lsn` are marked for trimming. After
    /// a crash the file holds either the old checkpoint (with every event after it) or the
    /// new one; never a mix. Answers the caller.
    fn switch_checkpoint(&mut self) -> Result<(), String> {
        let staging = self
            .checkpoints
            .staging
            .take()
            .expect("a staged checkpoint");
        match self.commit_switch(&staging) {
            Ok(()) => {
                let _ = staging.reply.send(Ok(()));
                Ok(())
            }
            Err(failure) => {
                // Recorded before the caller hears of it, so it gets this failure.
                self.shared.fail(failure.clone());
                let _ = staging.reply.send(Err(self.shared.failure_error()));
                Err(failure)
            }
        }
    }

    fn commit_switch(&mut self, staging: &Staging) -> Result<(), String> {
        let next_lsn = staging.next_lsn;
        let last = self.next_lsn - 1;
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} of the checkpoint at lsn {next_lsn} failed: {error}",
                self.shared.path.display()
            )
        };
        let started = Instant::now();
        let trimmed = next_lsn - self.checkpoints.lsn.max(1);
        let txn = self.begin(::redb::Durability::Immediate, &fail)?;
        let cut = write_switch(&txn, staging, &fail)?;
        txn.commit().map_err(|e| fail("commit", &e))?;
        self.checkpoints.switched(staging, cut);
        self.shared
            .checkpoint_lsn
            .store(next_lsn, Ordering::Release);
        self.note_checkpoint_commit(started);
        {
            let mut stats = lock(&self.shared.stats);
            stats.checkpoints += 1;
            stats.checkpoint_bytes_last = staging.bytes.len() as u64;
            stats.events_trimmed += trimmed;
            stats.checkpoint_ns += nanos(staging.started.elapsed());
        }
        // An fsync commit persists every commit before it.
        self.unflushed_since = None;
        self.shared.advance(last, Some(last));
        Ok(())
    }
}

/// Appends `batch` at the end of the events table in `txn`, as records of about
/// [`RECORD_BYTES_TARGET`] each, and advances `next_lsn` past it.
fn insert_records(
    txn: &WriteTransaction,
    batch: &[Arc<Event>],
    next_lsn: &mut u64,
    buffers: &mut Buffers,
    fail: Fail<'_>,
) -> Result<(), String> {
    let mut table = txn.open_table(EVENTS).map_err(|e| fail("open", &e))?;
    // Appending through a cursor at the end of the table: the keys are ascending, and the
    // cursor refuses one that is not (a second guard on continuity).
    let mut cursor = table
        .upper_bound_mut(Bound::<u64>::Unbounded)
        .map_err(|e| fail("seek", &e))?;
    let mut events = batch.iter().peekable();
    while events.peek().is_some() {
        // One record per batch, cut where it would outgrow one 64 KiB allocation.
        let record_first = *next_lsn;
        buffers.record.clear();
        buffers.buffer.clear();
        let mut count = 0u64;
        while let Some(event) = events.next_if(|_| buffers.buffer.len() < RECORD_BYTES_TARGET) {
            // The durable log must stay a gap-free prefix: checked in every build.
            assert_eq!(
                event.lsn.0, *next_lsn,
                "log writer: events must arrive in LSN order with no gap"
            );
            buffers.scratch.clear();
            encoding::encode_into(event, &mut buffers.scratch).map_err(|e| fail("encode", &e))?;
            encoding::push_framed(&mut buffers.buffer, &buffers.scratch);
            *next_lsn += 1;
            count += 1;
        }
        encoding::finish_batch(&mut buffers.record, count, &buffers.buffer);
        cursor
            .insert_before(record_first, buffers.record.as_slice())
            .map_err(|e| fail("insert", &e))?;
    }
    cursor.close().map_err(|e| fail("insert", &e))?;
    Ok(())
}
