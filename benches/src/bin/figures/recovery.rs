//! The rows of the `recovery` example (its text report).

use crate::format::{si, thousands};
use crate::sections::{Figure, fig};
use crate::text::{after, duration_after, line, need, rate_after};

pub(crate) fn recovery_rows(output: &str) -> Result<Vec<Figure>, String> {
    let head = line(output, "recovery: ")?;
    let events = need(after(head, "recovery: "), "the event count")?;
    let positions = need(after(head, " events over "), "the position count")?;
    let size = format!(
        "{} events, {} positions",
        thousands(events as u64),
        thousands(positions as u64)
    );
    let mut rows = Vec::new();

    let build = line(output, "build: submitted in ")?;
    rows.push(fig(
        "recovery.build",
        format!("build the log through the engine (`Async`): {size}"),
        format!(
            "{} ({} events/s); file {:.0} B/event",
            need(duration_after(build, "submitted in "), "the build time")?,
            si(need(rate_after(build, " s ("), "the build rate")?),
            need(after(build, "MiB ("), "the bytes per event")?
        ),
    ));

    let decode = line(output, "replay: ")?;
    let decode_at = need(decode.find("decode alone "), "the read + decode figure")?;
    rows.push(fig(
        "recovery.read_decode",
        "full replay: read + decode alone (`read_from`)",
        format!(
            "{} events/s",
            si(need(
                rate_after(&decode[decode_at..], " s ("),
                "the decode rate"
            )?)
        ),
    ));
    let recover = line(output, "replay: open with integrity check ")?;
    rows.push(fig(
        "recovery.replay",
        format!("full replay: `Engine::recover` from LSN 1 ({size})"),
        format!(
            "{} ({} events/s); open with the integrity check {}",
            need(
                duration_after(recover, "(decode on a second thread) "),
                "the replay time"
            )?,
            si(need(
                {
                    let at = recover.find("second thread) ").unwrap_or(0);
                    rate_after(&recover[at..], " s (")
                },
                "the replay rate"
            )?),
            need(duration_after(recover, "integrity check "), "the open time")?
        ),
    ));

    let cut = line(output, "checkpoint: purge of ")?;
    rows.push(fig(
        "recovery.purge",
        "checkpoint step 1: purge past retention",
        format!(
            "{} ({} entries)",
            need(duration_after(cut, "past retention "), "the purge time")?,
            thousands(need(after(cut, "purge of "), "the purged count")? as u64)
        ),
    ));
    rows.push(fig(
        "recovery.cut",
        "checkpoint step 2: `Ledger::cut`, of which every lock held (writes blocked)",
        format!(
            "{}, of which locked {}",
            need(duration_after(cut, "; cut "), "the cut time")?,
            need(
                duration_after(cut, "writes blocked) for "),
                "the locked time"
            )?
        ),
    ));
    let counts = output
        .lines()
        .find(|l| l.starts_with("checkpoint: ") && l.contains(" positions, ") && l.contains("->"))
        .ok_or("no checkpoint size line")?;
    let mut parts = Vec::new();
    for part in ["positions", "holds", "keys"] {
        let prefix = format!("checkpoint:   {part}: ");
        let l = line(output, &prefix)?;
        let each = need(after(l, "MiB ("), "bytes per part")?;
        parts.push(format!("{part} {each:.0} B each"));
    }
    rows.push(fig(
        "recovery.checkpoint_size",
        format!(
            "checkpoint encoding: {} positions, {} holds, {} keys",
            thousands(need(after(counts, "checkpoint: "), "positions")? as u64),
            thousands(need(after(counts, " positions, "), "holds")? as u64),
            thousands(need(after(counts, " holds, "), "keys")? as u64)
        ),
        format!(
            "{:.0} MiB; {}",
            need(after(counts, "-> "), "the checkpoint size")?,
            parts.join(", ")
        ),
    ));
    let whole = line(output, "checkpoint: Engine::checkpoint at lsn ")?;
    rows.push(fig(
        "recovery.checkpoint",
        "`Engine::checkpoint` in all; the writer's longest commit while staging it",
        format!(
            "{}; longest commit {}",
            need(
                whole
                    .find("at lsn ")
                    .and_then(|at| duration_after(&whole[at..], ": ")),
                "the checkpoint time"
            )?,
            need(duration_after(whole, "the longest "), "the longest commit")?
        ),
    ));
    let loaded = line(output, "checkpoint under load: ")?;
    rows.push(fig(
        "recovery.under_load",
        "a checkpoint with a durable submitter running: its slowest submit",
        need(duration_after(loaded, "the slowest "), "the slowest submit")?,
    ));
    let read = line(output, "load: open with integrity check ")?;
    rows.push(fig(
        "recovery.load_parts",
        "restart: `latest_checkpoint` (read, checksum, decode); `Ledger::from_checkpoint`",
        format!(
            "{}; {}",
            need(duration_after(read, "decode) "), "the checkpoint read")?,
            need(duration_after(read, "from_checkpoint "), "the load")?
        ),
    ));
    let restart = line(output, "load: open + Engine::recover from the checkpoint ")?;
    rows.push(fig(
        "recovery.restart",
        "restart from the checkpoint: open + `Engine::recover`",
        need(
            duration_after(restart, "from the checkpoint "),
            "the restart time",
        )?,
    ));
    Ok(rows)
}
