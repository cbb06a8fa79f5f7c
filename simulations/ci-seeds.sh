#!/usr/bin/env bash
# Runs the deterministic simulator (`vopr`) on a fixed list of seeds and three random ones,
# printing every seed it runs, within a time budget. Fails loudly (exit 1) on the first seed
# that breaks an invariant, with its shrunk reproduction.
#
# Options (environment):
#   VOPR_STEPS          steps per seed                       (default 2000)
#   VOPR_BUDGET_SECS    total budget, seconds                (default 170)
#   VOPR_SEEDS          the fixed seeds, space-separated     (default below)
#   VOPR_RANDOM_SEEDS   how many random seeds after them      (default 3)
# The budget is checked before each seed: a seed that starts runs to its end, and the seeds
# not started are listed as skipped (the script then still passes, and says so).
set -euo pipefail

cd "$(dirname "$0")/.."
steps="${VOPR_STEPS:-2000}"
budget="${VOPR_BUDGET_SECS:-170}"
fixed="${VOPR_SEEDS:-0 1 2 3 4 5 6 7 42 1337}"
random_count="${VOPR_RANDOM_SEEDS:-3}"

random_seeds=""
for _ in $(seq 1 "$random_count"); do
    random_seeds+=" $(od -An -N8 -tu8 /dev/urandom | tr -d ' ')"
done

echo "vopr CI: fixed seeds [$fixed], random seeds [${random_seeds# }], $steps steps each, budget ${budget}s"
cargo build --release -q -p inv-sim --bin vopr
bin="target/release/vopr"

start=$(date +%s)
ran=0
skipped=""
for seed in $fixed $random_seeds; do
    elapsed=$(( $(date +%s) - start ))
    if (( elapsed >= budget )); then
        skipped+=" $seed"
        continue
    fi
    echo "== seed $seed"
    if ! "$bin" --seed "$seed" --steps "$steps"; then
        echo "!! vopr FAILED on seed $seed ($steps steps)" >&2
        echo "!! reproduce: cargo run --release -p inv-sim --bin vopr -- --seed $seed --steps $steps" >&2
        exit 1
    fi
    ran=$((ran + 1))
done
elapsed=$(( $(date +%s) - start ))
if [[ -n "$skipped" ]]; then
    echo "vopr CI: $ran seeds passed in ${elapsed}s; budget reached, not run:$skipped"
else
    echo "vopr CI: $ran seeds passed in ${elapsed}s"
fi
