//! `inventory serve` and the client subcommands over TLS, end to end through the real binary
//! (docs/security.md): the refusal to serve plaintext beyond loopback, `check --ca` (and
//! `--cert`/`--key` for mutual TLS) against a TLS server, and a certificate swapped by SIGHUP;
//! and authentication through the binary: `inventory token new`, the CLI's `--token` and
//! INVENTORY_TOKEN, a role's refusal, principals rotated by SIGHUP, and a server with
//! authentication on but no principals refusing to start.
//! The certificates are made in the test by rcgen. Every child is killed if it runs past
//! [`CHILD_TIMEOUT`]; every wait for a log line is bounded by it too.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Instant;
use support::{CHILD_TIMEOUT, Run, inventory};

mod support;

/// Runs `inventory ARGS...` to its end, killing it past [`CHILD_TIMEOUT`].
fn run(args: &[&str]) -> Run {
    let mut command = inventory();
    command.args(args);
    support::run(command)
}

/// A running `inventory serve`, its log lines read as they come; killed when dropped.
struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    log: Vec<String>,
}

impl Serving {
    fn start(args: &[&str]) -> Serving {
        let mut child = inventory()
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let (sender, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Serving {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The first log line from now on that contains `text`.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {text:?} within {CHILD_TIMEOUT:?}; the log:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The port of the `serving inventory.v1` line (the server listens on port 0).
    fn port(&mut self) -> u16 {
        let line = self.wait_for("serving inventory.v1");
        let (_, after) = line
            .split_once("127.0.0.1:")
            .expect("the address is logged");
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect("a port")
    }

    /// Sends the server SIGHUP (libc: a `kill` binary is not on every machine).
    #[cfg(target_os = "linux")]
    fn hang_up(&self) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill reads only its integer arguments; the child is ours and still running
        // (it is reaped only in Drop).
        let status = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(
            status,
            0,
            "kill -HUP failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate authority made for the test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("self-signed").pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for 127.0.0.1 and localhost and its key, written as `NAME.pem` and
    /// `NAME.key` in `dir`: a server's, or a client's with `client`.
    fn issue(&self, dir: &Path, name: &str, client: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("a key");
        let mut params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("written");
        std::fs::write(&key_path, key.serialize_pem()).expect("written");
        (cert_path, key_path)
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.pem).expect("written");
        path
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn serving_plaintext_beyond_loopback_needs_insecure_plaintext() {
    let data = tempfile::tempdir().expect("a temp dir");
    let data_dir = text(data.path());
    let refused = run(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--metrics-listen",
        "off",
        "--data-dir",
        data_dir,
        // Authentication is another test's (auth.rs): here only TLS is in question.
        "--auth",
        "off",
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");
    for expected in [
        "refusing to serve plaintext on 0.0.0.0:0",
        "--tls-cert and --tls-key",
        "--insecure-plaintext",
    ] {
        assert!(refused.stderr.contains(expected), "{expected}: {refused:?}");
    }
    // The metrics port is held to the same rule.
    let refused = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "0.0.0.0:0",
        "--data-dir",
        data_dir,
        // Authentication is another test's (auth.rs): here only TLS is in question.
        "--auth",
        "off",
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("refusing to serve plaintext on 0.0.0.0:0"),
        "{refused:?}"
    );

    // With --insecure-plaintext it starts, and says what that means.
    let mut serving = Serving::start(&[
        "--listen",
        "0.0.0.0:0",
        "--metrics-listen",
        "off",
        "--data-dir",
        data_dir,
        "--insecure-plaintext",
        "--auth",
        "off",
    ]);
    let warning = serving.wait_for("serving plaintext beyond loopback");
    assert!(warning.contains("WARN"), "{warning}");
    serving.wait_for("serving inventory.v1");
}

// SIGHUP is sent through libc, a dependency on Linux only.
#[cfg(target_os = "linux")]
#[test]
fn check_over_tls_with_ca_and_a_certificate_swapped_by_sighup() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data_dir = dir.path().join("data");
    let ca = Ca::new("test CA");
    let ca_path = ca.write(dir.path(), "ca");
    let (cert, key) = ca.issue(dir.path(), "server", false);
    let mut serving = Serving::start(&[
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--data-dir",
        text(&data_dir),
        "--tls-cert",
        text(&cert),
        "--tls-key",
        text(&key),
    ]);
    let port = serving.port();
    let url = format!("https://127.0.0.1:{port}");
    let check = |server: &str, extra: &[&str]| {
        let mut args = vec!["check", "--server", server, "--timeout", "5s"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["sneaker-42", "web-dc"]);
        run(&args)
    };
    let ok = check(&url, &["--ca", text(&ca_path)]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("sneaker-42"), "{ok:?}");

    // An https server without --ca, or --ca with a plaintext URL, is a usage error.
    let no_ca = check(&url, &[]);
    assert_eq!(no_ca.code, 2, "{no_ca:?}");
    assert!(no_ca.stderr.contains("--ca"), "{no_ca:?}");
    let plain_url = format!("http://127.0.0.1:{port}");
    let http_with_ca = check(&plain_url, &["--ca", text(&ca_path)]);
    assert_eq!(http_with_ca.code, 2, "{http_with_ca:?}");
    // A plaintext client is refused by the TLS port.
    let plaintext = check(&plain_url, &[]);
    assert_ne!(plaintext.code, 0, "{plaintext:?}");

    // SIGHUP: the server now presents a certificate of another CA. New connections see it:
    // the first CA no longer verifies it, the second does.
    let other = Ca::new("next CA");
    let other_path = other.write(dir.path(), "next-ca");
    let (next_cert, next_key) = other.issue(dir.path(), "next", false);
    std::fs::copy(&next_cert, &cert).expect("copied");
    std::fs::copy(&next_key, &key).expect("copied");
    serving.hang_up();
    serving.wait_for("TLS certificates reloaded");
    let old_ca = check(&url, &["--ca", text(&ca_path)]);
    assert_eq!(old_ca.code, 4, "{old_ca:?}");
    let new_ca = check(&url, &["--ca", text(&other_path)]);
    assert_eq!(new_ca.code, 0, "{new_ca:?}");

    // A broken file: the reload fails, says so, and the certificate in use stays.
    std::fs::write(&cert, "not a certificate\n").expect("written");
    serving.hang_up();
    let failed = serving.wait_for("TLS certificates not reloaded");
    assert!(failed.contains(text(&cert)), "{failed}");
    let still = check(&url, &["--ca", text(&other_path)]);
    assert_eq!(still.code, 0, "{still:?}");
}

#[test]
fn mutual_tls_from_the_cli_needs_cert_and_key() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = Ca::new("test CA");
    let ca_path = ca.write(dir.path(), "ca");
    let clients = Ca::new("client CA");
    let clients_path = clients.write(dir.path(), "client-ca");
    let (cert, key) = ca.issue(dir.path(), "server", false);
    let (client_cert, client_key) = clients.issue(dir.path(), "store-17", true);
    let mut serving = Serving::start(&[
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--data-dir",
        text(&dir.path().join("data")),
        "--tls-cert",
        text(&cert),
        "--tls-key",
        text(&key),
        "--tls-client-ca",
        text(&clients_path),
    ]);
    let url = format!("https://127.0.0.1:{}", serving.port());
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--server",
            &url,
            "--timeout",
            "5s",
            "--ca",
            text(&ca_path),
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["sneaker-42", "web-dc"]);
        run(&args)
    };
    let anonymous = check(&[]);
    assert_ne!(anonymous.code, 0, "{anonymous:?}");
    let identified = check(&["--cert", text(&client_cert), "--key", text(&client_key)]);
    assert_eq!(identified.code, 0, "{identified:?}");
    // --cert without --key is a usage error.
    let half = check(&["--cert", text(&client_cert)]);
    assert_eq!(half.code, 2, "{half:?}");
}

/// `inventory token new`: a token and the hash to put in the principals file.
fn new_token() -> (String, String) {
    let made = run(&["token", "new"]);
    assert_eq!(made.code, 0, "{made:?}");
    let field = |name: &str| {
        made.stdout
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {made:?}"))
    };
    (field("token "), field("token_sha256 "))
}

/// A principals file naming one reader by these token hashes.
fn principals(hashes: &[&str]) -> String {
    let hashes: Vec<String> = hashes.iter().map(|hash| format!("{hash:?}")).collect();
    format!(
        "[[principal]]\nname = \"dashboard\"\nroles = [\"reader\"]\ntoken_sha256 = [{}]\n",
        hashes.join(", ")
    )
}

// SIGHUP is sent through libc, a dependency on Linux only.
#[cfg(target_os = "linux")]
#[test]
fn the_cli_sends_its_token_and_sighup_rotates_the_principals() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (old, old_hash) = new_token();
    let (new, new_hash) = new_token();
    assert_ne!(old, new);
    let file = dir.path().join("principals.toml");
    std::fs::write(&file, principals(&[&old_hash, &new_hash])).expect("written");
    // Authentication required on loopback too.
    let mut serving = Serving::start(&[
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--data-dir",
        text(&dir.path().join("data")),
        "--auth",
        "required",
        "--auth-file",
        text(&file),
    ]);
    let url = format!("http://127.0.0.1:{}", serving.port());
    let check = |token: Option<&str>| {
        let mut command = inventory();
        command.args(["check", "--server", &url, "--timeout", "5s"]);
        if let Some(token) = token {
            command.env("INVENTORY_TOKEN", token);
        }
        command.args(["sneaker-42", "web-dc"]);
        support::run(command)
    };
    let refused = check(None);
    assert_eq!(refused.code, 6, "{refused:?}");
    assert!(refused.stderr.contains("UNAUTHENTICATED"), "{refused:?}");
    assert_eq!(check(Some(&old)).code, 0);
    // --token as a flag works as the environment variable does.
    let flag = run(&[
        "check",
        "--server",
        &url,
        "--token",
        &new,
        "sneaker-42",
        "web-dc",
    ]);
    assert_eq!(flag.code, 0, "{flag:?}");
    // A reader may not write: PERMISSION_DENIED naming the permission.
    let denied = run(&[
        "adjust",
        "--server",
        &url,
        "--token",
        &new,
        "--reason",
        "count",
        "sneaker-42",
        "web-dc",
        "5",
    ]);
    assert_eq!(denied.code, 6, "{denied:?}");
    assert!(denied.stderr.contains("stock.write"), "{denied:?}");

    // Rotation: the old hash removed, SIGHUP; the old token is refused, the new one works.
    std::fs::write(&file, principals(&[&new_hash])).expect("written");
    serving.hang_up();
    serving.wait_for("principals reloaded");
    assert_eq!(check(Some(&old)).code, 6);
    assert_eq!(check(Some(&new)).code, 0);
    // A broken file keeps the principals in use, and says why.
    std::fs::write(&file, "[[principal]]\nname = \"x\"\n").expect("written");
    serving.hang_up();
    let failed = serving.wait_for("principals not reloaded");
    assert!(failed.contains(text(&file)), "{failed}");
    assert!(failed.contains("missing field `roles`"), "{failed}");
    assert_eq!(check(Some(&new)).code, 0);
}

#[test]
fn authentication_on_without_principals_refuses_to_start() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data_dir = text(dir.path());
    let refused = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--data-dir",
        data_dir,
        "--auth",
        "required",
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("--auth-file"), "{refused:?}");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").expect("written");
    let refused = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--data-dir",
        data_dir,
        "--auth",
        "required",
        "--auth-file",
        text(&empty),
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("no [[principal]]"), "{refused:?}");
}
