//! CPU time by side: the load generator (client), the in-process engine server, the floor
//! (see [`crate::floor`]), or a server in another process.
//!
//! Threads are told apart by name (`/proc/self/task/*/comm`): the load generator names its
//! threads `inv-load...` ([`CLIENT_THREADS`]) and the floor its `inv-floor...`
//! ([`FLOOR_THREADS`]); the process's main thread (which drives a one-worker client runtime) is
//! the client too. Everything else in the process is the in-process engine server: its runtime,
//! its log writer, redb, the relay and bulk lanes, whatever their names. The engine's share is
//! the process's CPU time ([`libc::CLOCK_PROCESS_CPUTIME_ID`], which keeps the time of threads
//! that have exited) less the client's and the floor's, so a server thread that comes and goes
//! inside a window is still counted.
//!
//! Per-thread times come from `/proc/.../schedstat` (nanoseconds); where the kernel lacks it,
//! from `/proc/.../stat` (clock ticks, usually 10 ms: fine over seconds). A server in another
//! process (`--server-pid`) is read from `/proc/PID/stat`, which also keeps its exited
//! threads' time.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::Path;

/// Name prefix of every load-generator thread (runtime workers, the pacer, the backfill).
pub const CLIENT_THREADS: &str = "inv-load";
/// Name prefix of every floor-server thread.
pub const FLOOR_THREADS: &str = "inv-floor";

/// Where the engine server's CPU time is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineCpu {
    /// The engine runs in this process ([`crate::LocalServer`]): every thread that is neither
    /// the client's nor the floor's.
    #[default]
    InProcess,
    /// The engine is another process with this pid (`/proc/PID/stat`).
    Pid(u32),
    /// Another process not named: its CPU is not known.
    Unknown,
}

/// Which side a thread of this process works for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Floor,
    Engine,
}

fn side_of(tid: u32, pid: u32, name: &str) -> Side {
    if tid == pid || name.starts_with(CLIENT_THREADS) {
        Side::Client
    } else if name.starts_with(FLOOR_THREADS) {
        Side::Floor
    } else {
        Side::Engine
    }
}

/// One thread's CPU time so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub ns: u64,
}

/// Clock ticks a second, for `/proc/.../stat`.
fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// utime + stime of a `/proc/.../stat` line, in ns.
fn stat_ns(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses; the fields after its last `)` are
    // space-separated, utime and stime being the 12th and 13th of them.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime).saturating_mul(1_000_000_000) / clock_ticks_per_s())
}

/// One task's CPU time in ns: schedstat's first field, else stat's ticks.
fn task_ns(task: &Path) -> Option<u64> {
    if let Ok(schedstat) = std::fs::read_to_string(task.join("schedstat"))
        && let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
    {
        return Some(ns);
    }
    stat_ns(&std::fs::read_to_string(task.join("stat")).ok()?)
}

/// CPU time of every live thread of process `pid` (`self` for this one).
pub fn threads(pid: &str) -> Result<Vec<ThreadCpu>> {
    let dir = Path::new("/proc").join(pid).join("task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may exit between the listing and the reads: skip it.
        let Some(ns) = task_ns(&entry.path()) else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm"))
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default();
        out.push(ThreadCpu { tid, name, ns });
    }
    Ok(out)
}

/// CPU time of this process, every thread (exited ones too), in ns.
pub fn process_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if status != 0 {
        return None;
    }
    Some(u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?)
}

/// CPU time of process `pid`, every thread (exited ones too), in ns.
pub fn pid_ns(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    stat_ns(&stat).with_context(|| format!("no utime/stime in {path}"))
}

/// Fails unless the engine's CPU can be read as `engine` says.
pub fn check(engine: EngineCpu) -> Result<()> {
    if process_ns().is_none() {
        bail!("CLOCK_PROCESS_CPUTIME_ID is not available");
    }
    threads("self")?;
    if let EngineCpu::Pid(pid) = engine {
        pid_ns(pid).with_context(|| format!("--server-pid {pid}: no such process to read"))?;
    }
    Ok(())
}

/// The CPU counters at one moment.
#[derive(Debug, Clone)]
struct Sample {
    process_ns: u64,
    /// Live threads of this process: side and CPU time.
    threads: HashMap<u32, (Side, u64)>,
    /// The external engine's CPU time.
    engine_pid_ns: Option<u64>,
}

impl Sample {
    fn take(engine: EngineCpu) -> Option<Sample> {
        let pid = std::process::id();
        let threads = threads("self")
            .ok()?
            .into_iter()
            .map(|t| (t.tid, (side_of(t.tid, pid, &t.name), t.ns)))
            .collect();
        Some(Sample {
            process_ns: process_ns()?,
            threads,
            engine_pid_ns: match engine {
                EngineCpu::Pid(pid) => pid_ns(pid).ok(),
                EngineCpu::InProcess | EngineCpu::Unknown => None,
            },
        })
    }
}

/// CPU seconds each side used over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// This whole process.
    pub process_s: f64,
    /// The load generator's threads.
    pub client_s: f64,
    /// The floor server's threads.
    pub floor_s: f64,
    /// The engine server: in process, or the `--server-pid` process; `None` if unknown.
    pub engine_s: Option<f64>,
}

/// Measures one window: [`CpuMeter::start`] before it, [`CpuMeter::used`] after it.
pub struct CpuMeter {
    engine: EngineCpu,
    start: Option<Sample>,
}

impl CpuMeter {
    pub fn start(engine: EngineCpu) -> CpuMeter {
        CpuMeter {
            engine,
            start: Sample::take(engine),
        }
    }

    /// CPU used since [`CpuMeter::start`]; `None` if it could not be read.
    pub fn used(&self) -> Option<CpuUse> {
        let start = self.start.as_ref()?;
        let end = Sample::take(self.engine)?;
        let (mut client, mut floor) = (0u64, 0u64);
        for (tid, (side, ns)) in &end.threads {
            // A thread started inside the window counts from zero.
            let before = start.threads.get(tid).map_or(0, |(_, ns)| *ns);
            let used = ns.saturating_sub(before);
            match side {
                Side::Client => client += used,
                Side::Floor => floor += used,
                Side::Engine => {}
            }
        }
        let process = end.process_ns.saturating_sub(start.process_ns);
        let engine = match self.engine {
            EngineCpu::InProcess => Some(process.saturating_sub(client + floor)),
            EngineCpu::Pid(_) => Some(end.engine_pid_ns?.saturating_sub(start.engine_pid_ns?)),
            EngineCpu::Unknown => None,
        };
        let s = |ns: u64| ns as f64 / 1e9;
        Some(CpuUse {
            process_s: s(process),
            client_s: s(client),
            floor_s: s(floor),
            engine_s: engine.map(s),
        })
    }
}

/// Lowers the calling thread's priority to `nice` (0 leaves it); a failure only costs the
/// isolation. For load-generator threads that stand for other machines.
pub fn lower_thread_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: plain system calls on the calling thread, no memory is passed.
    #[cfg(target_os = "linux")]
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// This thread's CPU time, from the kernel's own per-thread clock (not /proc).
    fn thread_clock() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which `ts` is.
        let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(status, 0);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Busy until this thread has used `cpu` more CPU time, however long that takes on a
    /// shared machine.
    fn spin(cpu: Duration) -> u64 {
        let until = thread_clock() + cpu;
        let mut x = 0u64;
        while thread_clock() < until {
            for _ in 0..1_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        x
    }

    fn own_ns(name: &str) -> u64 {
        let found: Vec<_> = threads("self")
            .expect("this process's threads")
            .into_iter()
            .filter(|t| t.name == name)
            .collect();
        assert_eq!(found.len(), 1, "one thread named {name}: {found:?}");
        found[0].ns
    }

    #[test]
    fn a_busy_thread_reads_positive_and_increasing() {
        let name = "inv-load-cputest";
        // comm holds at most 15 bytes.
        let comm = &name[..15];
        let (ready, go) = std::sync::mpsc::channel::<u64>();
        let (read, done) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                spin(Duration::from_millis(100));
                ready.send(0).unwrap();
                done.recv().unwrap();
                spin(Duration::from_millis(100));
                ready.send(0).unwrap();
                done.recv().unwrap();
            })
            .unwrap();
        go.recv().unwrap();
        let first = own_ns(comm);
        read.send(()).unwrap();
        go.recv().unwrap();
        let second = own_ns(comm);
        read.send(()).unwrap();
        thread.join().unwrap();
        // 100 ms of CPU each time; the margin covers stat's 10 ms ticks where schedstat is
        // missing.
        assert!(first >= 80_000_000, "first read {first} ns");
        assert!(second >= first + 80_000_000, "{first} ns then {second} ns");
    }

    #[test]
    fn a_window_splits_client_and_engine_time() {
        let meter = CpuMeter::start(EngineCpu::InProcess);
        let (spun, wait) = std::sync::mpsc::channel::<()>();
        let (measured, stop) = std::sync::mpsc::channel::<()>();
        // The client thread stays alive until the window is read: only live threads are
        // attributed by name.
        let client = std::thread::Builder::new()
            .name("inv-load-split".into())
            .spawn(move || {
                spin(Duration::from_millis(150));
                spun.send(()).unwrap();
                stop.recv().unwrap();
            })
            .unwrap();
        // An engine thread that exits inside the window still counts, through the process's
        // total.
        let engine = std::thread::Builder::new()
            .name("engine-split".into())
            .spawn(|| spin(Duration::from_millis(150)))
            .unwrap();
        engine.join().unwrap();
        wait.recv().unwrap();
        let used = meter.used().expect("CPU readable");
        measured.send(()).unwrap();
        client.join().unwrap();
        assert!(used.client_s >= 0.13, "{used:?}");
        assert!(used.engine_s.unwrap() >= 0.13, "{used:?}");
        assert!(used.process_s >= used.client_s + 0.13, "{used:?}");
        // `floor_s` is not asserted: another test of this binary may run a floor server (its
        // threads named as the floor's) during the window; `a_floor_run_measures_both_servers`
        // checks the floor's share.
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let ticks = clock_ticks_per_s();
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(stat_ns(line), Some(300 * 1_000_000_000 / ticks));
        assert_eq!(stat_ns("garbage"), None);
    }

    #[test]
    fn an_absent_server_pid_is_a_clear_error() {
        let error = check(EngineCpu::Pid(u32::MAX)).unwrap_err();
        assert!(format!("{error:#}").contains("--server-pid"), "{error:#}");
    }
}
