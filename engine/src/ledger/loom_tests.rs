//! Loom models of the ledger's locking protocol (see the helper brief; filled in below).
