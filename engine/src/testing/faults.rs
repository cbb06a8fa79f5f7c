//! A fault-injecting redb storage backend, for tests and simulations of disk faults.

use ::redb::StorageBackend;
use ::redb::backends::FileBackend;
use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::sync::lock;

/// A [`FileBackend`] behind a volatile write cache, with a switch that makes the device fail.
/// For tests and simulations of disk faults, with a real redb file underneath.
///
/// Writes and length changes are held in memory until `sync_data`, which applies them to the
/// file and syncs it; reads see the cached writes over the file. That is the model of a disk
/// (or page cache) whose unsynced writes are lost on power failure, and of Linux after a failed
/// fsync, which may drop the dirty pages it could not write. Through the [`FaultSwitch`]:
/// - [`FaultSwitch::fail_next_sync`]: the next `sync_data` fails with `EIO` and the cached
///   writes are lost; from then on the device is dead.
/// - [`FaultSwitch::power_cut`]: the cached writes are lost now and the device is dead.
/// - [`FaultSwitch::hold_syncs`] / [`FaultSwitch::release_syncs`]: a stalled disk; every
///   `sync_data` blocks until released (for back-pressure tests).
///
/// A dead device fails every read, write, length change and sync with `EIO`; the file keeps
/// what the last successful sync left, which is what a reopen (with a plain backend) sees.
/// Locks are passed through to the file, so a dead backend still holds and releases them.
#[derive(Debug)]
pub struct FaultyFileBackend {
    inner: FileBackend,
    state: Arc<FaultState>,
}

/// Controls a [`FaultyFileBackend`] from outside the database.
#[derive(Debug, Clone)]
pub struct FaultSwitch(Arc<FaultState>);

#[derive(Debug, Default)]
struct FaultState {
    fail_next_sync: AtomicBool,
    dead: AtomicBool,
    cache: Mutex<WriteCache>,
    stall: Mutex<Stall>,
    stall_released: Condvar,
}

#[derive(Debug, Default)]
struct Stall {
    held: bool,
    /// `sync_data` calls blocked right now.
    blocked: u64,
}

#[derive(Debug, Default)]
struct WriteCache {
    ops: Vec<CachedOp>,
    /// The storage length as redb sees it (`None`: the file's own length).
    len: Option<u64>,
}

#[derive(Debug)]
enum CachedOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl FaultSwitch {
    /// The next `sync_data` fails and loses the writes since the last one; the device is dead
    /// after it.
    pub fn fail_next_sync(&self) {
        self.0.fail_next_sync.store(true, Ordering::Release);
    }

    /// Loses every write since the last sync, now, and kills the device: the file is what a
    /// power cut at this instant would leave.
    pub fn power_cut(&self) {
        let mut cache = lock(&self.0.cache);
        self.0.dead.store(true, Ordering::Release);
        *cache = WriteCache::default();
        drop(cache);
        // A dead device does not stall: blocked syncs go on to fail.
        self.release_syncs();
    }

    /// From now on every `sync_data` blocks (before touching the file) until
    /// [`Self::release_syncs`].
    pub fn hold_syncs(&self) {
        lock(&self.0.stall).held = true;
    }

    pub fn release_syncs(&self) {
        lock(&self.0.stall).held = false;
        self.0.stall_released.notify_all();
    }

    /// How many `sync_data` calls are blocked by [`Self::hold_syncs`] right now.
    pub fn blocked_syncs(&self) -> u64 {
        lock(&self.0.stall).blocked
    }

    pub fn is_dead(&self) -> bool {
        self.0.dead.load(Ordering::Acquire)
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: device dead ({what})"))
}

impl FaultyFileBackend {
    /// Opens (or creates) `path` behind the cache; returns the backend and its switch.
    pub fn open(path: &Path) -> io::Result<(FaultyFileBackend, FaultSwitch)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let inner = FileBackend::new(file).map_err(|e| io::Error::other(e.to_string()))?;
        let state = Arc::new(FaultState::default());
        Ok((
            FaultyFileBackend {
                inner,
                state: Arc::clone(&state),
            },
            FaultSwitch(state),
        ))
    }

    fn check_alive(&self, what: &str) -> io::Result<()> {
        if self.state.dead.load(Ordering::Acquire) {
            return Err(eio(what));
        }
        Ok(())
    }
}

impl StorageBackend for FaultyFileBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.check_alive("len")?;
        let cache = lock(&self.state.cache);
        match cache.len {
            Some(len) => Ok(len),
            None => self.inner.len(),
        }
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.check_alive("read")?;
        let cache = lock(&self.state.cache);
        let len = match cache.len {
            Some(len) => len,
            None => self.inner.len()?,
        };
        let end = offset + out.len() as u64;
        if end > len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the storage",
            ));
        }
        // The file's bytes (zeros past its end), then every cached operation in order.
        let file_len = self.inner.len()?;
        let from_file = file_len.saturating_sub(offset).min(out.len() as u64) as usize;
        if from_file > 0 {
            self.inner.read(offset, &mut out[..from_file])?;
        }
        out[from_file..].fill(0);
        for op in &cache.ops {
            match op {
                CachedOp::Write { offset: at, data } => {
                    let at_end = at + data.len() as u64;
                    let start = offset.max(*at);
                    let stop = end.min(at_end);
                    if start < stop {
                        out[(start - offset) as usize..(stop - offset) as usize]
                            .copy_from_slice(&data[(start - at) as usize..(stop - at) as usize]);
                    }
                }
                CachedOp::SetLen(new_len) => {
                    // Bytes cut off by a shrink read as zero if the storage grows again.
                    if *new_len < end {
                        let start = new_len.saturating_sub(offset) as usize;
                        out[start..].fill(0);
                    }
                }
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.check_alive("set_len")?;
        let mut cache = lock(&self.state.cache);
        cache.ops.push(CachedOp::SetLen(len));
        cache.len = Some(len);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        {
            let mut stall = lock(&self.state.stall);
            stall.blocked += 1;
            while stall.held {
                stall = self
                    .state
                    .stall_released
                    .wait(stall)
                    .expect("a fault-state lock was poisoned: a thread panicked mid-update");
            }
            stall.blocked -= 1;
        }
        self.check_alive("sync_data")?;
        let mut cache = lock(&self.state.cache);
        if self.state.fail_next_sync.swap(false, Ordering::AcqRel) {
            self.state.dead.store(true, Ordering::Release);
            *cache = WriteCache::default();
            return Err(eio("sync_data failed; unsynced writes lost"));
        }
        for op in cache.ops.drain(..) {
            match op {
                CachedOp::Write { offset, data } => self.inner.write(offset, &data)?,
                CachedOp::SetLen(len) => self.inner.set_len(len)?,
            }
        }
        cache.len = None;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.check_alive("write")?;
        let mut cache = lock(&self.state.cache);
        let end = offset + data.len() as u64;
        let len = match cache.len {
            Some(len) => len,
            None => self.inner.len()?,
        };
        cache.len = Some(len.max(end));
        cache.ops.push(CachedOp::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, ::redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, ::redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), ::redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), ::redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), ::redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, ::redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
