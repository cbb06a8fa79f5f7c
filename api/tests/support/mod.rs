//! What the binary's tests share: running `inventory` as a child process with none of the
//! test's own `INVENTORY_*` variables, its output drained while it runs and its run bounded.
//!
//! Each test file includes this module (`mod support;`) and uses part of it, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest one run of the binary may take before the test kills it and fails.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(20);

/// `inventory` with no `INVENTORY_*` variable of the test's environment and no stdin.
pub fn inventory() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inventory"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("INVENTORY_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end, killing it past [`CHILD_TIMEOUT`]. Both pipes are drained while
/// it runs, so a chatty child never blocks on a full pipe.
pub fn run(mut command: Command) -> Run {
    let what = format!("{command:?}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran past {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code().expect("exited, not killed by a signal"),
        stdout: out_reader.join().expect("reader"),
        stderr: err_reader.join().expect("reader"),
    }
}
