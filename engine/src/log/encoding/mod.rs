//! The byte encoding of events and checkpoints as a durable log stores them.
//!
//! Every layer carries its own version, and a reader refuses any version it does not know
//! instead of guessing: an unknown version is corruption or a file from a newer build, and
//! either way replaying past it would build the wrong ledger. The bytes of every event kind
//! and of a checkpoint are pinned by golden files (`engine/tests/fixtures/`, checked by this
//! module's tests): a change to any type below that alters them fails the tests until it
//! comes with a new version number (and a decoder that keeps reading the old one, for as long
//! as that version is supported).
//!
//! # Event (version 4)
//! ```text
//! +---------+--------------------------------------------+
//! | version | payload                                    |
//! | 1 byte  | postcard encoding of `Event`, to the end   |
//! +---------+--------------------------------------------+
//! ```
//! - `version` is [`FORMAT_VERSION`] (4; version 3 did not record the principal, `Event::by`;
//!   version 2 lacked the store sequence anomaly facts, `SaleRecordedOutOfSequence` and
//!   `StoreAnomalyAcknowledged`, and version 1 stored requests with outcomes, before events
//!   were facts; none is read any more).
//! - `payload` is [postcard](https://docs.rs/postcard) 1.x applied to the serde derives of
//!   [`Event`], [`crate::Fact`] and the request types inside it: unsigned integers as LEB128
//!   varints, signed ones zigzag-encoded, strings and sequences as a varint length then the
//!   bytes, enum variants as a varint index in declaration order, `Option` as a 0/1 byte.
//!   postcard's wire format is stable within its major version 1.
//! - The payload fills the rest of the value: trailing bytes are refused, so a torn or
//!   concatenated value cannot decode as a shorter valid event.
//! - The event's own `lsn` is inside the payload, and the store keeps the LSN as the key too;
//!   [`decode`] checks they agree (the pair of the writer's continuity assertion).
//!
//! # Batch records (version 2)
//! A durable log stores one record per group-commit batch, under the batch's first LSN:
//! ```text
//! +---------+----------+---------------------------------------------------------+
//! | version | count    | count times: | length (varint) | event (as above)      |
//! | 1 byte  | varint   |              |                 | `length` bytes        |
//! +---------+----------+---------------------------------------------------------+
//! ```
//! - `version` is [`BATCH_FORMAT_VERSION`] (2).
//! - `count` (at least 1) events follow, with LSNs `key, key + 1, ..`; each event's own LSN
//!   must match (the same check as for a lone event). Varints are LEB128, as in postcard.
//! - Each event carries a length so a reader starting in the middle of a batch skips the
//!   leading events without decoding them. The record must end exactly after the last event.
//! - No checksum of its own: a record is one redb value written in one commit, covered by
//!   redb's page checksums. (A checkpoint has one because it spans many values.)
//! - The framing does not depend on what the events say, so a new event version leaves this
//!   one alone; the golden file of a batch names both versions, as its bytes hold both.
//!
//! # Checkpoints (version 4)
//! A [`Checkpoint`] is encoded the same way: one version byte ([`CHECKPOINT_FORMAT_VERSION`],
//! 4; version 3 had no principals on holds and in fingerprints, version 2 no store sequence
//! anomalies), then postcard applied to the serde derives
//! of [`Checkpoint`] and the types inside it, to the end of the bytes (trailing bytes are
//! refused). [`encode_checkpoint`] and [`decode_checkpoint`]; how a log stores the bytes
//! (`RedbLog` splits them into chunks) is the log's business.
//!
//! # Evolving the format
//! Because the payload follows declaration order, renaming a field is free but reordering
//! fields, reordering enum variants or inserting a variant anywhere but the end changes the
//! meaning of old bytes. The golden tests catch each of these. Such a change needs a new
//! version number, a golden file for it, and a decoder that keeps reading the old version.

use crate::checkpoint::Checkpoint;
use crate::error::LogError;
use crate::event::Event;
use crate::types::Lsn;
use std::sync::Arc;

/// The version byte of an event this build writes, and the only one it reads.
pub const FORMAT_VERSION: u8 = 4;

/// The first byte of a batch record this build writes, and the only one it reads.
pub const BATCH_FORMAT_VERSION: u8 = 2;

/// The version byte of an encoded checkpoint this build writes, and the only one it reads.
pub const CHECKPOINT_FORMAT_VERSION: u8 = 4;

/// Appends the encoding of `event` to `out` (which is not cleared first).
pub fn encode_into(event: &Event, out: &mut Vec<u8>) -> Result<(), LogError> {
    out.push(FORMAT_VERSION);
    let buffer = std::mem::take(out);
    match postcard::to_extend(event, buffer) {
        Ok(buffer) => {
            *out = buffer;
            Ok(())
        }
        // Serialization of these types cannot fail (no maps, no unsized sequences); if a future
        // field made it fail, refusing the event is the safe answer.
        Err(error) => Err(LogError::Corrupt(format!(
            "cannot encode event at lsn {}: {error}",
            event.lsn
        ))),
    }
}

/// The encoding of `event`.
pub fn encode(event: &Event) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::with_capacity(128);
    encode_into(event, &mut out)?;
    Ok(out)
}

/// Decodes the value stored under `lsn`. Refuses an unknown version, a payload that does not
/// decode or does not end where the value ends, and an event whose own LSN is not `lsn`.
pub fn decode(lsn: Lsn, bytes: &[u8]) -> Result<Event, LogError> {
    let corrupt = |reason: String| LogError::Corrupt(format!("event at lsn {lsn}: {reason}"));
    let (&version, payload) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty value".to_owned()))?;
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unknown format version {version} (this build reads {FORMAT_VERSION})"
        )));
    }
    let (event, rest): (Event, &[u8]) =
        postcard::take_from_bytes(payload).map_err(|error| corrupt(error.to_string()))?;
    if !rest.is_empty() {
        return Err(corrupt(format!("{} trailing bytes", rest.len())));
    }
    if event.lsn != lsn {
        return Err(corrupt(format!("the event says lsn {}", event.lsn)));
    }
    Ok(event)
}

/// Appends the batch record of `events`, whose LSNs must be consecutive, to `out`. An empty
/// batch is refused.
pub fn encode_batch_into<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    out: &mut Vec<u8>,
) -> Result<(), LogError> {
    let (mut framed, mut scratch, mut count) = (Vec::new(), Vec::new(), 0u64);
    for event in events {
        scratch.clear();
        encode_into(event, &mut scratch)?;
        push_framed(&mut framed, &scratch);
        count += 1;
    }
    if count == 0 {
        return Err(LogError::Corrupt("cannot encode an empty batch".to_owned()));
    }
    finish_batch(out, count, &framed);
    Ok(())
}

/// Appends one encoded event with its length to `framed`, the body of a batch being built.
pub fn push_framed(framed: &mut Vec<u8>, event: &[u8]) {
    write_varint(framed, event.len() as u64);
    framed.extend_from_slice(event);
}

/// Appends the record of a batch of `count` (at least 1) events to `out`, given the body
/// [`push_framed`] built.
pub fn finish_batch(out: &mut Vec<u8>, count: u64, framed: &[u8]) {
    debug_assert!(count > 0, "a batch holds at least one event");
    out.push(BATCH_FORMAT_VERSION);
    write_varint(out, count);
    out.extend_from_slice(framed);
}

/// One stored record: a batch of events.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    first: Lsn,
    count: u64,
    /// The events with their lengths (after the count).
    body: &'a [u8],
}

/// Reads the header of the batch record stored under `first`. Refuses an unknown version and
/// a batch of zero events; the events themselves are checked when decoded.
pub fn parse_record(first: Lsn, bytes: &[u8]) -> Result<Record<'_>, LogError> {
    let corrupt = |reason: String| LogError::Corrupt(format!("record at lsn {first}: {reason}"));
    match bytes.first() {
        None => Err(corrupt("empty value".to_owned())),
        Some(&BATCH_FORMAT_VERSION) => {
            let (count, body) = read_varint(&bytes[1..])
                .ok_or_else(|| corrupt("truncated event count".to_owned()))?;
            if count == 0 {
                return Err(corrupt("a batch of zero events".to_owned()));
            }
            if first.0.checked_add(count).is_none() {
                return Err(corrupt(format!("{count} events overflow the lsn")));
            }
            Ok(Record { first, count, body })
        }
        Some(&version) => Err(corrupt(format!(
            "unknown format version {version} (this build reads {BATCH_FORMAT_VERSION})"
        ))),
    }
}

impl Record<'_> {
    pub fn first(&self) -> Lsn {
        self.first
    }

    /// How many events the record holds (at least 1).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The LSN of its last event.
    pub fn last(&self) -> Lsn {
        Lsn(self.first.0 + self.count - 1)
    }

    /// Decodes its events from LSN `from` on (the leading ones are skipped undecoded) and
    /// pushes them onto `out` until `out` holds `max`. Reading to the end also checks the
    /// record ends right after its last event.
    pub fn decode_into(
        &self,
        from: Lsn,
        max: usize,
        out: &mut Vec<Arc<Event>>,
    ) -> Result<(), LogError> {
        let corrupt =
            |reason: String| LogError::Corrupt(format!("record at lsn {}: {reason}", self.first));
        let mut rest = self.body;
        for i in 0..self.count {
            if out.len() >= max {
                return Ok(());
            }
            let (len, after) = read_varint(rest)
                .ok_or_else(|| corrupt(format!("truncated length of event {i}")))?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= after.len())
                .ok_or_else(|| corrupt(format!("event {i} runs past the end")))?;
            let (bytes, after) = after.split_at(len);
            let lsn = Lsn(self.first.0 + i);
            if lsn >= from {
                out.push(Arc::new(decode(lsn, bytes)?));
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(corrupt(format!("{} trailing bytes", rest.len())));
        }
        Ok(())
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// LEB128; `None` if truncated or longer than a u64.
fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7F);
        if i == 9 && byte > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// The encoding of `checkpoint`: [`CHECKPOINT_FORMAT_VERSION`], then postcard.
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Result<Vec<u8>, LogError> {
    // Positions dominate; ~32 bytes each is a fair first guess that saves most regrowth.
    let mut out = Vec::with_capacity(1 + 32 * checkpoint.positions.len() + 64);
    out.push(CHECKPOINT_FORMAT_VERSION);
    postcard::to_extend(checkpoint, out).map_err(|error| {
        LogError::Corrupt(format!(
            "cannot encode the checkpoint at lsn {}: {error}",
            checkpoint.next_lsn
        ))
    })
}

/// Decodes a checkpoint. Refuses an unknown version, a payload that does not decode, and
/// trailing bytes.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, LogError> {
    let corrupt = |reason: String| LogError::Corrupt(format!("checkpoint: {reason}"));
    let (&version, payload) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty value".to_owned()))?;
    if version != CHECKPOINT_FORMAT_VERSION {
        return Err(corrupt(format!(
            "unknown format version {version} (this build reads {CHECKPOINT_FORMAT_VERSION})"
        )));
    }
    let (checkpoint, rest): (Checkpoint, &[u8]) =
        postcard::take_from_bytes(payload).map_err(|error| corrupt(error.to_string()))?;
    if !rest.is_empty() {
        return Err(corrupt(format!("{} trailing bytes", rest.len())));
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
