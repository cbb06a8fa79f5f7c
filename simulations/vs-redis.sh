#!/usr/bin/env bash
# Checks in positions per second: the engine's read paths and Redis's, measured in one run on
# this machine (docs/clients.md, "Which call for which use").
#
#   bash simulations/vs-redis.sh [SECONDS]
#
# Needs redis-server, redis-cli and redis-benchmark (Debian: apt-get install redis-server).
# Redis runs on a free loopback port with persistence off and is stopped at the end; its keys
# are named and valued as the load tool stocks its skus (1,000 skus, sku-000000..sku-000999).
# Both sides use 64 connections with one call in flight each: redis-benchmark -c 64, and the
# load tool's ordinary tonic client (64 callers on one Channel) against the engine in process.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-5}"
for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" > /dev/null || {
        echo "vs-redis: $tool not found (Debian: apt-get install redis-server)" >&2
        exit 2
    }
done

cargo build --release --locked -q -p inv-sim --bin load
load=target/release/load

dir="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    > "$dir/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2> /dev/null || true; wait "$redis_pid" 2> /dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do
    redis-cli -p "$port" ping > /dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$port" ping > /dev/null || { cat "$dir/redis.log" >&2; exit 1; }

keys() { for ((i = 0; i < $1; i++)); do printf 'sku-%06d ' "$i"; done; }
for ((i = 0; i < 1000; i++)); do printf 'SET sku-%06d 1000000000\n' "$i"; done |
    redis-cli -p "$port" > /dev/null

# Requests per second from redis-benchmark's CSV line ("test","rps",...).
redis_rps() {
    local requests=$1
    shift
    redis-benchmark -p "$port" -c 64 -n "$requests" --csv "$@" | tail -1 |
        awk -F'","' '{ print $2 }'
}

printf '%-44s %12s %14s\n' "path" "calls/s" "positions/s"
row() { awk -v p="$1" -v c="$2" -v n="$3" 'BEGIN { printf "%-44s %12.0f %14.0f\n", p, c, c * n }'; }

# Enough requests for about `seconds` at the rates these reach on a 2-core machine.
row "Redis GET" "$(redis_rps $((150000 * seconds)) get sku-000007)" 1
row "Redis MGET of 100 keys" "$(redis_rps $((75000 * seconds)) mget $(keys 100))" 100
row "Redis MGET of 1,000 keys" "$(redis_rps $((10000 * seconds)) mget $(keys 1000))" 1000

# The load tool's JSON: a row per (scenario, server, op); ops_per_s is calls per second.
engine_rps() {
    local scenario=$1 positions=$2
    "$load" --client ordinary --scenario "$scenario" --check-positions "$positions" \
        --seconds "$seconds" --json 2> /dev/null |
        python3 -c 'import json, sys
rows = json.load(sys.stdin)
print(next(r["ops_per_s"] for r in rows if r["server"] == "engine" and r["op"] == "check"))'
}
row "engine unary Check, 1 position" "$(engine_rps check 1)" 1
row "engine unary Check, 1,000 positions" "$(engine_rps check 1000)" 1000
row "engine unary CheckSellable, 1,000 skus" "$(engine_rps check-sellable 1000)" 1000
