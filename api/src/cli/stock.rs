//! The subcommands that change a position's stock outside a hold: `adjust` (goods receipts,
//! counts, damage), `safety-stock` and `dispose` (the verdict on units a return quarantined).
//!
//! Each is one write under a client-chosen id, its idempotency key. The id is optional on the
//! command line: without `--id` one is made up ([`id_or_generated`]) and printed before the
//! call, so a retry after a timeout can reuse it and be applied at most once.

use super::output::{duplicate_note, print_json};
use super::{ClientOpts, Exit, Outcome, connect, id_or_generated};
use clap::{Args, ValueEnum};
use inv_proto::v1 as pb;
use serde_json::json;

/// `adjust`.
#[derive(Args, Debug)]
pub struct AdjustArgs {
    /// The SKU.
    #[arg(value_name = "SKU")]
    pub sku: String,
    /// The location.
    #[arg(value_name = "LOCATION")]
    pub location: String,
    /// Units added to on_hand (positive) or removed (negative, e.g. -3); not zero.
    #[arg(value_name = "DELTA", allow_negative_numbers = true)]
    pub delta: i64,
    /// Why: goods receipt, cycle count, damage (at most 256 bytes).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// The adjustment's id, its idempotency key [default: a new one, printed]. A retry must
    /// reuse the id, or the adjustment is applied twice.
    #[arg(long, value_name = "ADJUSTMENT_ID")]
    pub id: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn adjust(args: AdjustArgs) -> Outcome {
    let id = id_or_generated(args.id, "adj", "adjustment");
    let mut client = connect(&args.client, true).await?;
    let response = client
        .adjust(pb::AdjustRequest {
            adjustment_id: id.clone(),
            sku: args.sku.clone(),
            location: args.location.clone(),
            delta: args.delta,
            reason: args.reason.clone(),
        })
        .await?
        .into_inner();
    if args.client.json {
        print_json(&json!({
            "adjustment_id": id, "result": "adjusted", "lsn": response.lsn,
            "duplicate": response.duplicate, "sku": args.sku, "location": args.location,
            "delta": args.delta, "reason": args.reason,
        }));
    } else {
        println!(
            "adjusted {id}: on_hand of {}@{} {:+} (lsn {}{})",
            args.sku,
            args.location,
            args.delta,
            response.lsn,
            duplicate_note(response.duplicate),
        );
    }
    Ok(Exit::Success)
}

/// `safety-stock`.
#[derive(Args, Debug)]
pub struct SafetyStockArgs {
    /// The SKU.
    #[arg(value_name = "SKU")]
    pub sku: String,
    /// The location.
    #[arg(value_name = "LOCATION")]
    pub location: String,
    /// Units of the position no channel may sell (0 clears it).
    #[arg(value_name = "QTY")]
    pub qty: u64,
    /// The request's id, its idempotency key [default: a new one, printed]; a retry must
    /// reuse it.
    #[arg(long, value_name = "REQUEST_ID")]
    pub id: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn safety_stock(args: SafetyStockArgs) -> Outcome {
    let id = id_or_generated(args.id, "ss", "safety-stock request");
    let mut client = connect(&args.client, true).await?;
    let response = client
        .set_safety_stock(pb::SetSafetyStockRequest {
            request_id: id.clone(),
            sku: args.sku.clone(),
            location: args.location.clone(),
            qty: args.qty,
        })
        .await?
        .into_inner();
    if args.client.json {
        print_json(&json!({
            "request_id": id, "result": "safety_stock_set", "lsn": response.lsn,
            "duplicate": response.duplicate, "sku": args.sku, "location": args.location,
            "qty": args.qty,
        }));
    } else {
        println!(
            "set {id}: safety stock of {}@{} is {} (lsn {}{})",
            args.sku,
            args.location,
            args.qty,
            response.lsn,
            duplicate_note(response.duplicate),
        );
    }
    Ok(Exit::Success)
}

/// The inspection verdict on quarantined units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Action {
    /// Back into sellable stock.
    Restock,
    /// Written off.
    Scrap,
}

impl Action {
    fn proto(self) -> pb::DispositionAction {
        match self {
            Action::Restock => pb::DispositionAction::Restock,
            Action::Scrap => pb::DispositionAction::Scrap,
        }
    }

    fn past_tense(self) -> &'static str {
        match self {
            Action::Restock => "restocked",
            Action::Scrap => "scrapped",
        }
    }
}

/// `dispose`.
#[derive(Args, Debug)]
pub struct DisposeArgs {
    /// The return whose quarantined units are decided.
    #[arg(value_name = "RETURN_ID")]
    pub return_id: String,
    /// The SKU.
    #[arg(value_name = "SKU")]
    pub sku: String,
    /// The location the units are quarantined at.
    #[arg(value_name = "LOCATION")]
    pub location: String,
    /// Units decided, at most what the return still has in quarantine there.
    #[arg(value_name = "QTY")]
    pub qty: u64,
    /// What happens to the units.
    #[arg(long, value_enum)]
    pub action: Action,
    /// The decision's id, its idempotency key [default: a new one, printed]. A retry must
    /// reuse the id, or the units are decided twice.
    #[arg(long, value_name = "DISPOSITION_ID")]
    pub id: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn dispose(args: DisposeArgs) -> Outcome {
    let id = id_or_generated(args.id, "disp", "disposition");
    let mut client = connect(&args.client, true).await?;
    let response = client
        .disposition(pb::DispositionRequest {
            disposition_id: id.clone(),
            return_id: args.return_id.clone(),
            sku: args.sku.clone(),
            location: args.location.clone(),
            qty: args.qty,
            action: args.action.proto().into(),
        })
        .await?
        .into_inner();
    if args.client.json {
        print_json(&json!({
            "disposition_id": id, "result": args.action.past_tense(), "lsn": response.lsn,
            "duplicate": response.duplicate, "return_id": args.return_id, "sku": args.sku,
            "location": args.location, "qty": args.qty,
        }));
    } else {
        println!(
            "{} {id}: {} of {}@{} from return {} (lsn {}{})",
            args.action.past_tense(),
            args.qty,
            args.sku,
            args.location,
            args.return_id,
            response.lsn,
            duplicate_note(response.duplicate),
        );
    }
    Ok(Exit::Success)
}
