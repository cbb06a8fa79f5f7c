//! Not written yet.
use super::{Env, Outcome};
use anyhow::Result;
use std::sync::Arc;

pub async fn run(_env: &Arc<Env>) -> Result<Outcome> {
    anyhow::bail!("not written yet")
}
