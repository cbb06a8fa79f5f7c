//! `inventory demo`: an in-process flash sale against a real ledger, so a fresh checkout shows
//! the engine working without a server: concurrent marketplace holds racing for a hot sku,
//! commits, releases, expiries, then the invariants and a replay of the log checked against the
//! live state.

use anyhow::{Context, Result, bail};
use inv_engine::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Units of the hot sku in stock when the sale opens.
    #[arg(long, default_value_t = 1_000)]
    stock: u64,
    /// Concurrent marketplace connectors.
    #[arg(long, default_value_t = 8)]
    connectors: u64,
    /// Reserve attempts per connector.
    #[arg(long, default_value_t = 400)]
    attempts: u64,
    /// Lock shards (a power of two).
    #[arg(long, default_value_t = 64)]
    shards: usize,
}

const SKU: &str = "sneaker-42";
const DC: &str = "web-dc";
const TTL_MS: u64 = 15 * 60_000;

/// Plays the sale and checks what it left behind; fails if an invariant or the replay does not hold.
pub fn run(args: &DemoArgs) -> Result<()> {
    if !args.shards.is_power_of_two() {
        bail!("--shards must be a power of two, got {}", args.shards);
    }
    let log = Arc::new(MemLog::new());
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let config = LedgerConfig {
        shards: args.shards,
        ..LedgerConfig::default()
    };
    let engine = Engine::recover(config, log.clone(), clock.clone())?;

    engine.submit(Command::Adjust(Adjust {
        adjustment_id: AdjustmentId::from("receipt-1"),
        sku: Sku::from(SKU),
        location: Location::from(DC),
        delta: i64::try_from(args.stock).context("--stock too large")?,
        reason: "goods receipt".into(),
    }))??;

    let granted_units = AtomicU64::new(0);
    let rejected = AtomicU64::new(0);
    let committed_units = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for connector in 0..args.connectors {
            let (engine, granted_units, rejected, committed_units) =
                (&engine, &granted_units, &rejected, &committed_units);
            scope.spawn(move || -> Result<()> {
                for attempt in 0..args.attempts {
                    let id = format!("c{connector}-{attempt}");
                    let qty = 1 + (connector + attempt) % 3;
                    let reserve = Command::Reserve(Reserve {
                        reservation_id: ReservationId::from(id.as_str()),
                        channel: Channel::from(format!("marketplace-{connector}").as_str()),
                        lines: vec![Line::new(SKU, DC, qty)],
                        ttl_ms: TTL_MS,
                    });
                    let receipt = engine.submit(reserve.clone())??;
                    // Retries are safe: the same request gets the same answer.
                    let retry = engine.submit(reserve)??;
                    assert_eq!(retry.lsn, receipt.lsn);
                    match receipt.outcome {
                        Outcome::Granted { .. } => {
                            granted_units.fetch_add(qty, Ordering::Relaxed);
                            // 7 in 10 checkouts complete, 1 in 10 is abandoned, the rest time out.
                            match attempt % 10 {
                                0..=6 => {
                                    engine.submit(Command::Commit(Commit {
                                        reservation_id: ReservationId::from(id.as_str()),
                                        lines: None,
                                    }))??;
                                    committed_units.fetch_add(qty, Ordering::Relaxed);
                                }
                                7 => {
                                    engine.submit(Command::Release(Release {
                                        reservation_id: ReservationId::from(id.as_str()),
                                    }))??;
                                }
                                _ => {}
                            }
                        }
                        _ => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            });
        }
    });

    let during = engine.check(SKU, DC).context("position exists")?;
    clock.advance_ms(TTL_MS);
    let mut expired = 0;
    loop {
        let n = engine.expire_due(1_000)?;
        if n == 0 {
            break;
        }
        expired += n;
    }
    let after = engine.check(SKU, DC).context("position exists")?;

    let replayed = Ledger::new(config, Arc::new(MemLog::new()));
    replayed.replay_log(log.as_ref())?;
    let invariants = engine.check_invariants();

    println!(
        "flash sale on {SKU} at {DC}: {} units, {} connectors x {} attempts",
        args.stock, args.connectors, args.attempts
    );
    println!(
        "  units granted            {:>8}",
        granted_units.load(Ordering::Relaxed)
    );
    println!(
        "  reserves rejected        {:>8}   (oversells prevented)",
        rejected.load(Ordering::Relaxed)
    );
    println!(
        "  units committed          {:>8}",
        committed_units.load(Ordering::Relaxed)
    );
    println!(
        "  during sale   on_hand {:>6}  reserved {:>6}  available {:>6}",
        during.on_hand, during.reserved, during.available
    );
    println!("  holds expired            {expired:>8}");
    println!(
        "  after expiry  on_hand {:>6}  reserved {:>6}  available {:>6}",
        after.on_hand, after.reserved, after.available
    );
    println!("  events logged            {:>8}", log.len());
    println!(
        "  invariants               {}",
        if invariants.is_ok() { "ok" } else { "VIOLATED" }
    );
    println!(
        "  replay digest            {}",
        if replayed.digest() == engine.digest() {
            "equal to live state"
        } else {
            "DIFFERS"
        }
    );
    invariants.map_err(anyhow::Error::msg)?;
    if replayed.digest() != engine.digest() {
        bail!("replaying the log did not reproduce the live state");
    }
    // Released and expired units go back on sale, so grants may exceed stock; sales may not.
    if committed_units.load(Ordering::Relaxed) > args.stock || during.available < 0 {
        bail!("sold more units than were in stock");
    }
    Ok(())
}
