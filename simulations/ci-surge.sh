#!/usr/bin/env bash
# Every surge scenario at CI size against an in-process server, each bounded in time; fails
# loudly (exit 1 and the scenario's FAILED lines) when a verification fails or a scenario does
# not finish. Uses the debug build that `cargo test` already made, so it only links `load`.
# Reports and charts go to $SURGE_OUT (default target/surge-ci). About a minute on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${SURGE_OUT:-target/surge-ci}"
mkdir -p "$out"

cargo build --locked -p inv-sim --bin load
load=target/debug/load

started=$SECONDS
failed=()
for scenario in flash-sale store-reconnect return-wave holiday-surge reconcile-under-load; do
  printf '\n==> surge %s (CI size)\n' "$scenario"
  # A scenario that hangs is a failure too: 60 s each at most (they take 2-25 s).
  if ! timeout --kill-after=5 60 "$load" --ci --scenario "$scenario" \
      --report "$out/$scenario.json" --chart "$out/$scenario.svg"; then
    echo "!!! surge $scenario FAILED (see above and $out/$scenario.json)" >&2
    failed+=("$scenario")
  fi
done
printf '\nsurge scenarios took %d s\n' "$((SECONDS - started))"
if ((${#failed[@]})); then
  echo "!!! surge verification failed: ${failed[*]}" >&2
  exit 1
fi
echo "surge: every scenario verified"
