//! The engine: a ledger, the clock it decides by, and the log it answers through.
//!
//! This is the type the API and simulations hold. It adds two things to the ledger: time (read
//! once per command from the injected [`Clock`]) and durability (a submit returns only once its
//! event, or for a retry the original event, is durable in the log).

use crate::clock::Clock;
use crate::command::Command;
use crate::error::{LogError, ReplayError, SubmitError};
use crate::ledger::{Availability, HoldView, Ledger, LedgerConfig, Receipt, StoreStatus};
use crate::log::EventLog;
use std::sync::Arc;

pub struct Engine {
    ledger: Ledger,
    clock: Arc<dyn Clock>,
}

impl Engine {
    /// Rebuilds the ledger from everything in `log`, then accepts new events into it.
    pub fn recover(
        config: LedgerConfig,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ReplayError> {
        let ledger = Ledger::new(config, Arc::clone(&log));
        ledger.replay_log(log.as_ref())?;
        Ok(Self { ledger, clock })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Decides and applies `command`, and returns once its outcome is durable.
    pub fn submit(&self, command: Command) -> Result<Receipt, SubmitError> {
        // Back-pressure before any lock is taken: a full log queue refuses the command
        // untouched, so the caller may retry it as it is.
        self.ledger.log().admit().map_err(|error| match error {
            LogError::Full { capacity } => SubmitError::Busy { capacity },
            error => SubmitError::Log(error),
        })?;
        let receipt = self.ledger.submit(command, self.clock.now_ms())?;
        self.ledger.log().wait_durable(receipt.lsn)?;
        Ok(receipt)
    }

    pub fn check(&self, sku: &str, location: &str) -> Option<Availability> {
        self.ledger.check(sku, location, self.clock.now_ms())
    }

    pub fn check_sku(&self, sku: &str) -> Vec<(String, Availability)> {
        self.ledger.check_sku(sku, self.clock.now_ms())
    }

    pub fn reservation(&self, reservation_id: &str) -> Option<HoldView> {
        self.ledger.reservation(reservation_id, self.clock.now_ms())
    }

    pub fn store_status(&self, store_id: &str) -> Option<StoreStatus> {
        self.ledger.store_status(store_id)
    }

    /// Records expiry events for up to `batch_max` lapsed holds; returns how many.
    pub fn expire_due(&self, batch_max: usize) -> Result<usize, SubmitError> {
        let expired = self.ledger.expire_due(self.clock.now_ms(), batch_max)?;
        if expired > 0 {
            self.ledger
                .log()
                .wait_durable(self.ledger.next_lsn().0.saturating_sub(1).into())?;
        }
        Ok(expired)
    }
}
