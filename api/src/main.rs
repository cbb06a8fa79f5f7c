//! `inventory`: the engine's command-line entry point.
//!
//! - `inventory` or `inventory serve`: open the data folder's event log, recover the ledger
//!   from it, and serve the gRPC API until SIGINT or SIGTERM, then drain and flush. With
//!   `--tls-cert`, over TLS only, the certificates read again at every SIGHUP.
//! - `inventory demo`: an in-process flash sale against a real ledger (see `demo.rs`).
//! - `inventory check`, `reserve`, `commit`, ... : a client of a running server, with tables
//!   or `--json` and exit codes scripts can rely on (see `cli/`).
//! - `inventory completions bash|zsh|fish`: the shell completion script of this command tree.
//!
//! Settings come from, in order of precedence: flags, `INVENTORY_*` environment variables, the
//! TOML file named by `--config`, and the defaults; each is declared once (see `settings.rs`).
//! Everything here is wiring: the server itself is `inv_api::serve`.

// glibc's malloc is slow when memory allocated on one thread is freed on another, which is
// what every write does (built by a request, dropped by the log writer); see Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod demo;
mod settings;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use inv_api::ServerConfig;
use inv_engine::archive::redb::RedbArchive;
use inv_engine::reconcile::{RedbSnapshotStore, SnapshotStore};
use inv_engine::{Engine, LedgerConfig, MemoryPolicy, RedbLog, RedbLogOptions, SystemClock};
use settings::{LogFormat, ServeArgs, Settings};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "inventory",
    version,
    about = "Inventory availability and reservation engine",
    long_about = "Inventory availability and reservation engine.\n\n\
        With no subcommand (or `serve`), serves the gRPC API over the data folder. The client \
        subcommands (check, reserve, commit, ...) talk to a running server: --server or \
        INVENTORY_SERVER says where.",
    after_help = cli::EXIT_CODES_HELP,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// With no subcommand, `inventory` serves (these are `serve`'s flags).
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the gRPC API over the data folder (the default).
    // Boxed: the serve settings are several times the size of any client command.
    Serve(Box<ServeArgs>),
    /// Play an in-process flash sale against a real ledger and check its invariants.
    Demo(demo::DemoArgs),
    #[command(flatten)]
    Client(cli::ClientCmd),
    /// Print a shell completion script for every subcommand and flag.
    #[command(after_help = cli::COMPLETIONS_HELP)]
    Completions(cli::CompletionsArgs),
    /// Bearer tokens for the principals file (docs/security.md).
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a new random token (256 bits) and its SHA-256: give the token to the client
    /// (INVENTORY_TOKEN), paste the hash into the principal's `token_sha256`.
    New,
}

/// The `inventory` command: [`Cli`] with the environment variables of the serve settings.
fn command() -> clap::Command {
    settings::declare(Cli::command())
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let args: Cli = match settings::parse(command(), &argv) {
        Ok(args) => args,
        // Usage errors exit 2 (clap's own code, the same as an invalid argument below); help
        // and version exit 0.
        Err(error) => match error.downcast_ref::<clap::Error>() {
            Some(usage) => usage.exit(),
            None => {
                eprintln!("Error: {error:?}");
                return ExitCode::FAILURE;
            }
        },
    };
    let result = match args.command {
        Some(Cmd::Demo(demo)) => demo::run(&demo),
        Some(Cmd::Serve(serve_args)) => serve(*serve_args),
        Some(Cmd::Client(command)) => return cli::run(command),
        Some(Cmd::Completions(shell)) => return cli::print_completions(&shell, command()),
        Some(Cmd::Token(TokenCmd::New)) => {
            let token = inv_api::auth::new_token();
            println!("token        {token}");
            println!("token_sha256 {}", inv_api::auth::token_sha256_hex(&token));
            return ExitCode::SUCCESS;
        }
        None => serve(args.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:?}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(settings: &Settings) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .with_context(|| format!("invalid log filter {:?}", settings.log))?;
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let result = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

fn serve(args: ServeArgs) -> Result<()> {
    let settings = Settings::resolve(args)?;
    init_tracing(&settings)?;
    if !settings.transparent_huge_pages
        && let Err(error) = inv_api::host::disable_transparent_huge_pages()
    {
        warn!(%error, "cannot turn transparent huge pages off; latency may have ~5 ms stalls");
    }
    let runtime = inv_api::host::runtime_builder(settings.worker_threads)
        .enable_all()
        .thread_name("inventory")
        // Change-feed reads, the expirer and the checkpointer; see ServerConfig.
        .max_blocking_threads(settings.server.blocking_threads_max() + 16)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> Result<()> {
    // Before recovery, which can take a while: a mistake here should fail at once.
    let tls = match &settings.tls {
        Some(files) => Some(
            inv_api::tls::ServerTls::load(files.clone())
                .context("loading the TLS certificate (--tls-cert, --tls-key, --tls-client-ca)")?,
        ),
        None => {
            refuse_plaintext_beyond_loopback(&settings)?;
            None
        }
    };
    let auth = match &settings.auth_file {
        Some(path) => {
            let auth = inv_api::auth::Auth::load(path)
                .context("loading the principals (--auth-file; docs/security.md)")?;
            info!(
                principals = auth.principals().len(),
                file = %path.display(),
                "authentication on"
            );
            Some(auth)
        }
        None => None,
    };
    // Stopped once serving has (dropping the handle would leave it running); on an early
    // return the runtime's end stops it.
    let reloader = (tls.is_some() || auth.is_some())
        .then(|| tokio::spawn(reload_on_hangup(tls.clone(), auth.clone())));
    info!(
        data_dir = %settings.data_dir.display(),
        durability = ?settings.log_options.durability,
        shards = settings.ledger.shards,
        "opening the event log"
    );
    let started = Instant::now();
    let (engine, log, snapshots) = {
        let data_dir = settings.data_dir.clone();
        let (ledger, memory, log_options) =
            (settings.ledger, settings.memory, settings.log_options);
        tokio::task::spawn_blocking(move || open(&data_dir, ledger, memory, log_options))
            .await
            .context("recovery panicked")??
    };
    let server = settings.server;
    let events = engine.head_lsn().0;
    info!(
        events,
        holds_open = engine.holds_open(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered the ledger from the log"
    );

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    info!(
        addr = %listener.local_addr()?,
        workers = settings.worker_threads,
        tls = tls.is_some(),
        mutual_tls = settings.tls.as_ref().is_some_and(|f| f.client_ca.is_some()),
        "serving inventory.v1"
    );

    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint {addr}"))?,
        ),
        None => None,
    };
    let engine = Arc::new(engine);
    let options = inv_api::ServeOptions {
        metrics_listener,
        metrics_tls: tls.clone(),
        snapshots: Some(snapshots),
        reconcile: settings.reconcile.clone(),
        auth,
    };
    match tls {
        None => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            inv_api::serve_with(
                Arc::clone(&engine),
                server,
                incoming,
                shutdown_signal(),
                options,
            )
            .await?;
        }
        Some(tls) => {
            let incoming = tls.incoming(listener, inv_api::tls::Port::Grpc);
            inv_api::serve_with(
                Arc::clone(&engine),
                server,
                incoming,
                shutdown_signal(),
                options,
            )
            .await?;
        }
    }
    if let Some(reloader) = reloader {
        reloader.abort();
    }

    // Calls whose clients left may still be finishing on the blocking pool; each holds the
    // engine until it is done. Wait for them (bounded), then close the log, which commits
    // and fsyncs everything still queued.
    let deadline = Instant::now() + Duration::from_millis(server.drain_timeout_ms);
    while Arc::strong_count(&engine) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lsn = engine.head_lsn().0;
    final_checkpoint(&engine, &server).await;
    drop(engine);
    match Arc::try_unwrap(log) {
        Ok(log) => {
            tokio::task::spawn_blocking(move || log.close())
                .await
                .context("closing the log panicked")?
                .context("closing the event log")?;
            info!(lsn, "event log closed");
        }
        Err(_) => warn!("engine calls still running; the log flushes when the last one ends"),
    }
    Ok(())
}

/// Writes a checkpoint of what was logged since the last one, so the next start loads it
/// instead of replaying the tail. Skipped when checkpoints are off or the engine failed.
async fn final_checkpoint(engine: &Arc<Engine>, server: &ServerConfig) {
    let policy = server.checkpoint_policy();
    if (policy.every_events == 0 && policy.every_ms == 0) || engine.failure().is_some() {
        return;
    }
    let started = Instant::now();
    let engine = Arc::clone(engine);
    let any_event = inv_engine::CheckpointPolicy {
        every_events: 1,
        every_ms: 0,
    };
    match tokio::task::spawn_blocking(move || engine.checkpoint_if_due(&any_event)).await {
        Ok(Ok(Some(next_lsn))) => info!(
            next_lsn = next_lsn.0,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint written at shutdown"
        ),
        Ok(Ok(None)) => {}
        Ok(Err(error)) => {
            warn!(%error, "no checkpoint at shutdown; the next start replays the log")
        }
        Err(error) => warn!(%error, "checkpoint at shutdown panicked"),
    }
}

/// Opens the data folder's log, the key archive beside it (`keys.redb`) and rebuilds the
/// ledger from them, and opens the snapshot store (`snapshots.redb`).
fn open(
    data_dir: &Path,
    ledger: LedgerConfig,
    memory: MemoryPolicy,
    options: RedbLogOptions,
) -> Result<(Engine, Arc<RedbLog>, Arc<dyn SnapshotStore>)> {
    let log = Arc::new(
        RedbLog::open(data_dir, options)
            .with_context(|| format!("opening the event log in {}", data_dir.display()))?,
    );
    let archive = RedbArchive::open(data_dir)
        .with_context(|| format!("opening the key archive in {}", data_dir.display()))?;
    let engine = Engine::recover_with(
        ledger,
        log.clone(),
        Arc::new(SystemClock),
        Some(Arc::new(archive)),
        memory,
    )
    .with_context(|| format!("replaying the event log in {}", data_dir.display()))?;
    let (archived, _) = engine.ledger().archived_keys();
    info!(
        archived_keys = archived,
        memory_limit_bytes = memory.limit_bytes,
        key_memory_ms = memory.key_memory_ms,
        "key archive indexed"
    );
    let snapshots = RedbSnapshotStore::open(data_dir)
        .with_context(|| format!("opening the snapshot store in {}", data_dir.display()))?;
    Ok((engine, log, Arc::new(snapshots)))
}

/// Without TLS, refuses a listen address (gRPC or metrics) that is not loopback, unless
/// `--insecure-plaintext` says to serve it anyway; then warns, at every start.
fn refuse_plaintext_beyond_loopback(settings: &Settings) -> Result<()> {
    let addrs: Vec<SocketAddr> = std::iter::once(settings.listen)
        .chain(settings.metrics_listen)
        .collect();
    let exposed = inv_api::tls::beyond_loopback(&addrs);
    if exposed.is_empty() {
        return Ok(());
    }
    let exposed: Vec<String> = exposed.iter().map(ToString::to_string).collect();
    let exposed = exposed.join(", ");
    if !settings.insecure_plaintext {
        anyhow::bail!(
            "refusing to serve plaintext on {exposed}, which is not a loopback address: give \
             --tls-cert and --tls-key to serve TLS, or --insecure-plaintext to serve it without \
             TLS (see docs/security.md)"
        );
    }
    warn!(
        addresses = %exposed,
        "serving plaintext beyond loopback (--insecure-plaintext): anyone who can reach these \
         addresses can call the API and read its traffic"
    );
    Ok(())
}

/// Reads the TLS files and the principals file again at every SIGHUP. A reload that fails
/// keeps what is in use (certificates or principals); either way open connections go on. The
/// handler is installed before this returns (a SIGHUP's default action ends the process), so a
/// SIGHUP after the server logs that it is serving always reloads; the returned future does
/// the reloading.
fn reload_on_hangup(
    tls: Option<Arc<inv_api::tls::ServerTls>>,
    auth: Option<Arc<inv_api::auth::Auth>>,
) -> impl Future<Output = ()> {
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let mut hangups = match hangups {
                Ok(signal) => signal,
                Err(error) => {
                    warn!(%error, "cannot listen for SIGHUP: TLS certificates and principals will not reload");
                    return;
                }
            };
            while hangups.recv().await.is_some() {
                if let Some(tls) = &tls {
                    let files = tls.files();
                    match tls.reload() {
                        Ok(()) => info!(
                            cert = %files.cert.display(),
                            "SIGHUP: TLS certificates reloaded; new connections use them"
                        ),
                        Err(error) => warn!(
                            %error,
                            "SIGHUP: TLS certificates not reloaded; the previous ones stay in use"
                        ),
                    }
                }
                if let Some(auth) = &auth {
                    match auth.reload() {
                        Ok(principals) => info!(
                            principals,
                            file = %auth.path().display(),
                            "SIGHUP: principals reloaded; the next call uses them"
                        ),
                        Err(error) => warn!(
                            %error,
                            "SIGHUP: principals not reloaded; the previous ones stay in use"
                        ),
                    }
                }
            }
        }
        #[cfg(not(unix))]
        let _ = (tls, auth);
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Cli> {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        settings::parse(command(), &argv)
    }

    #[test]
    fn client_subcommands_parse_with_their_own_flags() {
        let cli = parse(&[
            "inventory",
            "reserve",
            "--server",
            "http://10.0.0.1:50051",
            "--id",
            "o-1",
            "a@b=2",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Some(Cmd::Client(cli::ClientCmd::Reserve(_)))
        ));
        let error = parse(&["inventory", "reserve", "--id", "o-1", "a-b-2"])
            .err()
            .expect("a bad LINE is refused");
        let error = error.downcast_ref::<clap::Error>().expect("a usage error");
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn no_subcommand_serves() {
        let cli = parse(&["inventory", "--listen", "127.0.0.1:1"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(
            cli.serve.process.listen,
            "127.0.0.1:1".parse().expect("an address")
        );
        let cli = parse(&["inventory", "demo", "--stock", "5"]).expect("parses");
        assert!(matches!(cli.command, Some(Cmd::Demo(_))));
    }
}
