//! Commands: what clients ask the engine to do, in the imperative.
//!
//! Every command names its own idempotency key through its natural ids (a reserve is keyed by its
//! reservation id, a POS sale by store and transaction id, and so on; see
//! [`Command::idempotency_key`]), so a client cannot retry one request under two keys. Each
//! command also knows how to validate itself, naming every offending field (collected in
//! [`Violations`], which costs nothing for a valid command), and how to fingerprint each of its
//! fields, so a key reused with another payload can be refused with the name of the field that
//! differs. The lines are one field of a fingerprint; [`lines_difference`] names the line that
//! differs, given the original request.

use crate::error::{SubmitError, Violations};
use crate::limits::{ID_BYTES_MAX, LINES_MAX, QTY_MAX, TEXT_BYTES_MAX, TTL_MS_MAX, TTL_MS_MIN};
use crate::types::*;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64;

/// One (sku, location, qty) line of a reserve, commit or sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: Sku,
    pub location: Location,
    pub qty: u64,
}

impl Line {
    pub fn new(sku: &str, location: &str, qty: u64) -> Self {
        Self {
            sku: Sku::from(sku),
            location: Location::from(location),
            qty,
        }
    }
}

/// Place a hold on every line, or on none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    pub reservation_id: ReservationId,
    pub channel: Channel,
    pub lines: Vec<Line>,
    /// How long the hold lasts, from the engine's clock at the moment it is granted.
    pub ttl_ms: u64,
}

/// The goods left: turn (part of) a hold into a decrement of `on_hand`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub reservation_id: ReservationId,
    /// `None` commits every held line in full. `Some` commits the listed lines (each at most the
    /// held quantity); whatever is not committed is released.
    pub lines: Option<Vec<Line>>,
}

/// Give a hold back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub reservation_id: ReservationId,
}

/// Move a hold's expiry to `ttl_ms` from now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extend {
    pub reservation_id: ReservationId,
    /// A hold may be extended many times; each extension is its own request.
    pub request_id: RequestId,
    pub ttl_ms: u64,
}

/// End a hold whose TTL has passed. Issued by the engine's expiry sweep, never by clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expire {
    pub reservation_id: ReservationId,
}

/// A point-of-sale decrement. A sale is a fact that already happened in a store: it needs no
/// hold and is never refused for lack of stock (it may drive `on_hand` below zero, which is
/// reported, not refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSale {
    pub store_id: StoreId,
    pub txn_id: TxnId,
    /// The store's own gap-free sequence (1, 2, 3, ...), used to show an operator which sales
    /// have not arrived yet.
    pub store_seq: u64,
    /// When the sale happened at the till (store clock), milliseconds since the epoch.
    pub occurred_at_ms: u64,
    pub lines: Vec<Line>,
}

/// What happens to returned units on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReturnDisposition {
    /// Straight back into sellable stock.
    Restock,
    /// Held in quarantine until an inspection decides (see [`Dispose`]).
    Inspect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    pub sku: Sku,
    pub location: Location,
    pub qty: u64,
    pub disposition: ReturnDisposition,
}

/// A customer return arriving at a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordReturn {
    pub return_id: ReturnId,
    pub lines: Vec<ReturnLine>,
}

/// The inspection verdict on quarantined units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DispositionAction {
    Restock,
    Scrap,
}

/// Decide the fate of units a return put in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispose {
    pub disposition_id: DispositionId,
    pub return_id: ReturnId,
    pub sku: Sku,
    pub location: Location,
    pub qty: u64,
    pub action: DispositionAction,
}

/// A signed change to `on_hand`: goods receipts, cycle-count corrections, damage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjust {
    pub adjustment_id: AdjustmentId,
    pub sku: Sku,
    pub location: Location,
    pub delta: i64,
    pub reason: CompactString,
}

/// Set the units of a position that no channel may sell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSafetyStock {
    pub request_id: RequestId,
    pub sku: Sku,
    pub location: Location,
    pub qty: u64,
}

/// What happens to a drift beyond the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BeyondTolerance {
    /// Corrected like any other drift, and reported.
    Apply,
    /// Reported and held for review (`ResolveDrift`); on_hand is not changed.
    Hold,
}

/// How much drift is corrected without review: a drift is within tolerance when its size is
/// at most `units`, or at most `percent_bp` (basis points, 100 = 1%) of the engine's on_hand at
/// the snapshot's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tolerance {
    pub units: u64,
    pub percent_bp: u32,
    pub beyond: BeyondTolerance,
}

impl Tolerance {
    /// Whether `drift` is within tolerance of an engine count of `engine_on_hand`.
    pub fn accepts(&self, drift: i64, engine_on_hand: i64) -> bool {
        let size = drift.unsigned_abs();
        let base = engine_on_hand.unsigned_abs();
        size <= self.units
            || u128::from(size) * 10_000 <= u128::from(base) * u128::from(self.percent_bp)
    }
}

impl Default for Tolerance {
    /// 2 units or 1%, whichever is larger; beyond that, held for review.
    fn default() -> Self {
        Self {
            units: 2,
            percent_bp: 100,
            beyond: BeyondTolerance::Hold,
        }
    }
}

/// Correct one position to what the ERP counted as of `as_of_ms` (one row of a snapshot). Issued
/// by a reconciliation run (`crate::reconcile`), never by clients directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    pub snapshot_id: SnapshotId,
    pub sku: Sku,
    pub location: Location,
    /// The ERP's event-time watermark: the snapshot counts every movement up to this time.
    pub as_of_ms: u64,
    pub erp_on_hand: i64,
    /// From the log, as the run read it: the net on_hand effect at this position of the events
    /// before `tap_from_lsn` whose event time is after `as_of_ms`.
    pub since_as_of: i64,
    /// How many such events there were (for the report).
    pub events_since: u32,
    /// The first LSN the ledger's tap (see `Ledger::start_tap`) counts for this run: the events
    /// from it on are added under the position's lock, so nothing is missed or counted twice.
    pub tap_from_lsn: Lsn,
    pub tolerance: Tolerance,
}

/// The verdict on a drift held for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DriftAction {
    /// Correct on_hand by the held drift.
    Apply,
    /// Leave on_hand as it is; the drift is dropped.
    Dismiss,
}

/// Resolve the drift a snapshot found at a position and held for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveDrift {
    pub snapshot_id: SnapshotId,
    pub sku: Sku,
    pub location: Location,
    pub action: DriftAction,
}

/// The verdict on a sale whose store sequence number jumped (see `crate::stores`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AnomalyAction {
    /// The store really renumbered: its sequence goes on from the jump, and the numbers
    /// missing below it are given up on (counted as abandoned).
    Accept,
    /// The number was wrong: it stays out of the sequence, and the anomaly is forgotten.
    Dismiss,
}

/// An operator's verdict on a store sequence anomaly, named by the sale's store and txn id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeStoreAnomaly {
    pub store_id: StoreId,
    pub txn_id: TxnId,
    pub action: AnomalyAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Reserve(Reserve),
    Commit(Commit),
    Release(Release),
    Extend(Extend),
    Expire(Expire),
    RecordSale(RecordSale),
    RecordReturn(RecordReturn),
    Dispose(Dispose),
    Adjust(Adjust),
    SetSafetyStock(SetSafetyStock),
    Reconcile(Reconcile),
    ResolveDrift(ResolveDrift),
    AcknowledgeStoreAnomaly(AcknowledgeStoreAnomaly),
}

/// Which command an idempotency key or fingerprint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CommandKind {
    Reserve,
    Commit,
    Release,
    Extend,
    Expire,
    RecordSale,
    RecordReturn,
    Dispose,
    Adjust,
    SetSafetyStock,
    Reconcile,
    ResolveDrift,
    AcknowledgeStoreAnomaly,
}

impl CommandKind {
    /// Field names in fingerprint order; a key conflict names one of these.
    pub fn field_names(self) -> &'static [&'static str] {
        match self {
            CommandKind::Reserve => &["reservation_id", "channel", "lines", "ttl_ms"],
            CommandKind::Commit => &["reservation_id", "lines"],
            CommandKind::Release => &["reservation_id"],
            CommandKind::Extend => &["reservation_id", "request_id", "ttl_ms"],
            CommandKind::Expire => &["reservation_id"],
            CommandKind::RecordSale => {
                &["store_id", "txn_id", "store_seq", "occurred_at_ms", "lines"]
            }
            CommandKind::RecordReturn => &["return_id", "lines"],
            CommandKind::Dispose => &[
                "disposition_id",
                "return_id",
                "sku",
                "location",
                "qty",
                "action",
            ],
            CommandKind::Adjust => &["adjustment_id", "sku", "location", "delta", "reason"],
            CommandKind::SetSafetyStock => &["request_id", "sku", "location", "qty"],
            CommandKind::Reconcile => {
                &["snapshot_id", "sku", "location", "as_of_ms", "erp_on_hand"]
            }
            CommandKind::ResolveDrift => &["snapshot_id", "sku", "location", "action"],
            CommandKind::AcknowledgeStoreAnomaly => &["store_id", "txn_id", "action"],
        }
    }
}

/// The key under which a command's outcome is remembered. `id` and `sub` are the command's
/// natural ids (`sub` is empty unless the natural id has two parts, e.g. store and txn).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub kind: CommandKind,
    pub id: CompactString,
    pub sub: CompactString,
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}:{}", self.kind, self.id)?;
        if !self.sub.is_empty() {
            write!(f, ":{}", self.sub)?;
        }
        Ok(())
    }
}

/// Most fields any command has (Dispose has six).
pub const FINGERPRINT_FIELDS_MAX: usize = 6;

/// One 64-bit hash per field, in [`CommandKind::field_names`] order, and who sent it. Storing
/// hashes instead of the payload keeps a week of keys affordable; a collision would need two
/// different payloads under the same key with equal 64-bit hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    pub kind: CommandKind,
    /// [`principal_hash`] of the principal that sent the request (0 for none): a key belongs
    /// to whoever used it first, so another principal's retry is a conflict, not a duplicate.
    /// 32 bits sit in the padding after `kind`; a false match needs two of a deployment's few
    /// principals to collide.
    pub by: u32,
    pub fields: [u64; FINGERPRINT_FIELDS_MAX],
}

/// What a key conflict names when the key was first used by another principal (or with
/// authentication off, and now on, or the other way).
pub const PRINCIPAL_FIELD: &str = "principal";

/// A principal's part of a fingerprint: 0 for none, a nonzero 32-bit hash of its name else.
pub fn principal_hash(by: Option<&PrincipalName>) -> u32 {
    by.map_or(0, |name| (xxh3_64(name.as_str().as_bytes()) as u32).max(1))
}

impl Fingerprint {
    /// This fingerprint as `by` sent it.
    pub fn sent_by(self, by: Option<&PrincipalName>) -> Fingerprint {
        Fingerprint {
            by: principal_hash(by),
            ..self
        }
    }

    /// The first field that differs, if any: the principal before any field of the request,
    /// because whatever else differs, the key is someone else's.
    pub fn differing_field(&self, other: &Fingerprint) -> Option<&'static str> {
        if self.kind != other.kind {
            return Some("command");
        }
        if self.by != other.by {
            return Some(PRINCIPAL_FIELD);
        }
        let names = self.kind.field_names();
        (0..names.len())
            .find(|&i| self.fields[i] != other.fields[i])
            .map(|i| names[i])
    }
}

fn hash_str(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}

/// Hashes (sku, location, qty, extra) per line; `extra` carries per-line fields beyond those.
/// The bytes are gathered on the stack and hashed in one call, which is far cheaper than
/// xxh3's streaming state for the short baskets that are the norm and gives the same hash.
fn hash_positions<'a>(lines: impl Iterator<Item = (&'a Sku, &'a Location, u64, u8)>) -> u64 {
    let mut bytes: SmallVec<[u8; 256]> = SmallVec::new();
    for (sku, location, qty, extra) in lines {
        bytes.extend_from_slice(sku.as_str().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(location.as_str().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&qty.to_le_bytes());
        bytes.push(extra);
    }
    xxh3_64(&bytes)
}

fn hash_lines(lines: &[Line]) -> u64 {
    hash_positions(lines.iter().map(|l| (&l.sku, &l.location, l.qty, 0)))
}

fn hash_return_lines(lines: &[ReturnLine]) -> u64 {
    hash_positions(
        lines
            .iter()
            .map(|l| (&l.sku, &l.location, l.qty, l.disposition as u8)),
    )
}

/// What a keyed command knows about its own idempotency: the natural ids its key is made of
/// and a hash of each of its fields. Implemented per command struct, so a logged event (which
/// carries the struct, not a [`Command`]) yields its key and fingerprint without a copy.
pub trait KeyedCommand {
    const KIND: CommandKind;

    /// The key's id and, for two-part natural ids (store + txn, reservation + request), its sub id.
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>);

    /// One hash per field, in [`CommandKind::field_names`] order, padded with zeros.
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX];

    fn idempotency_key(&self) -> IdempotencyKey {
        let (id, sub) = self.key_ids();
        IdempotencyKey {
            kind: Self::KIND,
            id: id.clone(),
            sub: sub.cloned().unwrap_or_default(),
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            kind: Self::KIND,
            by: 0,
            fields: self.fingerprint_fields(),
        }
    }
}

fn kind_of<K: KeyedCommand>(_: &K) -> CommandKind {
    K::KIND
}

/// `values` padded to a fingerprint's width.
fn padded<const N: usize>(values: [u64; N]) -> [u64; FINGERPRINT_FIELDS_MAX] {
    const { assert!(N <= FINGERPRINT_FIELDS_MAX) };
    let mut fields = [0u64; FINGERPRINT_FIELDS_MAX];
    fields[..N].copy_from_slice(&values);
    fields
}

impl KeyedCommand for Reserve {
    const KIND: CommandKind = CommandKind::Reserve;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.reservation_id.0, None)
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.reservation_id.as_str()),
            hash_str(self.channel.as_str()),
            hash_lines(&self.lines),
            self.ttl_ms,
        ])
    }
}

impl KeyedCommand for Commit {
    const KIND: CommandKind = CommandKind::Commit;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.reservation_id.0, None)
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.reservation_id.as_str()),
            // Distinguish "commit everything" from an explicit list of lines.
            self.lines.as_deref().map_or(u64::MAX, hash_lines),
        ])
    }
}

impl KeyedCommand for Release {
    const KIND: CommandKind = CommandKind::Release;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.reservation_id.0, None)
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([hash_str(self.reservation_id.as_str())])
    }
}

impl KeyedCommand for Extend {
    const KIND: CommandKind = CommandKind::Extend;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.reservation_id.0, Some(&self.request_id.0))
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.reservation_id.as_str()),
            hash_str(self.request_id.as_str()),
            self.ttl_ms,
        ])
    }
}

impl KeyedCommand for RecordSale {
    const KIND: CommandKind = CommandKind::RecordSale;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.store_id.0, Some(&self.txn_id.0))
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.store_id.as_str()),
            hash_str(self.txn_id.as_str()),
            self.store_seq,
            self.occurred_at_ms,
            hash_lines(&self.lines),
        ])
    }
}

impl KeyedCommand for RecordReturn {
    const KIND: CommandKind = CommandKind::RecordReturn;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.return_id.0, None)
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.return_id.as_str()),
            hash_return_lines(&self.lines),
        ])
    }
}

impl KeyedCommand for Dispose {
    const KIND: CommandKind = CommandKind::Dispose;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.disposition_id.0, None)
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.disposition_id.as_str()),
            hash_str(self.return_id.as_str()),
            hash_str(self.sku.as_str()),
            hash_str(self.location.as_str()),
            self.qty,
            self.action as u64,
        ])
    }
}

impl KeyedCommand for Adjust {
    const KIND: CommandKind = CommandKind::Adjust;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.adjustment_id.0, None)
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.adjustment_id.as_str()),
            hash_str(self.sku.as_str()),
            hash_str(self.location.as_str()),
            self.delta as u64,
            hash_str(self.reason.as_str()),
        ])
    }
}

impl KeyedCommand for SetSafetyStock {
    const KIND: CommandKind = CommandKind::SetSafetyStock;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.request_id.0, None)
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.request_id.as_str()),
            hash_str(self.sku.as_str()),
            hash_str(self.location.as_str()),
            self.qty,
        ])
    }
}

/// The sub id of a key made of a snapshot and a position: sku and location, separated by a
/// byte no id may contain.
fn position_sub(sku: &Sku, location: &Location) -> CompactString {
    let mut sub = CompactString::with_capacity(sku.as_str().len() + location.as_str().len() + 1);
    sub.push_str(sku.as_str());
    sub.push('\u{1f}');
    sub.push_str(location.as_str());
    sub
}

impl KeyedCommand for Reconcile {
    const KIND: CommandKind = CommandKind::Reconcile;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.snapshot_id.0, None)
    }
    /// The position is part of the key (one snapshot reconciles many positions).
    fn idempotency_key(&self) -> IdempotencyKey {
        IdempotencyKey {
            kind: Self::KIND,
            id: self.snapshot_id.0.clone(),
            sub: position_sub(&self.sku, &self.location),
        }
    }
    /// The run's own readings (`since_as_of`, the tap, the tolerance) are not part of the
    /// request: a run resumed after a restart reads them anew and must get the first answer.
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.snapshot_id.as_str()),
            hash_str(self.sku.as_str()),
            hash_str(self.location.as_str()),
            self.as_of_ms,
            self.erp_on_hand as u64,
        ])
    }
}

impl KeyedCommand for ResolveDrift {
    const KIND: CommandKind = CommandKind::ResolveDrift;
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.snapshot_id.0, None)
    }
    fn idempotency_key(&self) -> IdempotencyKey {
        IdempotencyKey {
            kind: Self::KIND,
            id: self.snapshot_id.0.clone(),
            sub: position_sub(&self.sku, &self.location),
        }
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.snapshot_id.as_str()),
            hash_str(self.sku.as_str()),
            hash_str(self.location.as_str()),
            self.action as u64,
        ])
    }
}

impl KeyedCommand for AcknowledgeStoreAnomaly {
    const KIND: CommandKind = CommandKind::AcknowledgeStoreAnomaly;
    /// Keyed like the sale it acknowledges (store + txn), under a kind of its own.
    fn key_ids(&self) -> (&CompactString, Option<&CompactString>) {
        (&self.store_id.0, Some(&self.txn_id.0))
    }
    fn fingerprint_fields(&self) -> [u64; FINGERPRINT_FIELDS_MAX] {
        padded([
            hash_str(self.store_id.as_str()),
            hash_str(self.txn_id.as_str()),
            self.action as u64,
        ])
    }
}

impl AcknowledgeStoreAnomaly {
    /// The request's shape: both ids valid (the action is typed).
    fn check(&self, violations: &mut Violations) {
        check_id(violations, "store_id", self.store_id.as_str());
        check_id(violations, "txn_id", self.txn_id.as_str());
    }
}

/// Applies `$f` to the command's struct if it is keyed, else evaluates `$unkeyed`.
macro_rules! with_keyed {
    ($command:expr, $c:ident => $f:expr, $unkeyed:expr) => {
        match $command {
            Command::Reserve($c) => $f,
            Command::Commit($c) => $f,
            Command::Release($c) => $f,
            Command::Extend($c) => $f,
            Command::RecordSale($c) => $f,
            Command::RecordReturn($c) => $f,
            Command::Dispose($c) => $f,
            Command::Adjust($c) => $f,
            Command::SetSafetyStock($c) => $f,
            Command::Reconcile($c) => $f,
            Command::ResolveDrift($c) => $f,
            Command::AcknowledgeStoreAnomaly($c) => $f,
            Command::Expire(_) => $unkeyed,
        }
    };
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        with_keyed!(self, c => kind_of(c), CommandKind::Expire)
    }

    /// The key a retry of this command is recognised by. `None` for `Expire`, which the engine
    /// issues itself and only ever once per hold.
    pub fn idempotency_key(&self) -> Option<IdempotencyKey> {
        with_keyed!(self, c => Some(c.idempotency_key()), None)
    }

    /// The fingerprint of the command's fields; `None` for `Expire`, which has no key.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        with_keyed!(self, c => Some(c.fingerprint()), None)
    }
}

mod conflict;
mod validate;

pub use conflict::{DIFFERS_FROM_ORIGINAL, RequestLines, lines_difference};

use validate::check_id;
pub use validate::id_problem;

#[cfg(all(test, not(loom)))]
mod tests;
