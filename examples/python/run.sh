#!/usr/bin/env bash
# Runs the Python connector example end to end: a virtualenv with the pinned requirements, stubs
# generated from proto/ into build/ (never committed), and a server of this repo's binary started
# on a fresh temporary data folder and a free loopback port, stopped on exit.
#
#   bash examples/python/run.sh [VENV_DIR]      (default: examples/python/.venv)
#
# Environment: INVENTORY_BIN  the server binary (default target/release/inventory, built with
#                             `cargo build --release --bin inventory` if missing)
#              PYTHON         the interpreter that creates the venv (default python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$here/.venv}"
build="$here/build"
python="${PYTHON:-python3}"

fail() { echo "run.sh: $*" >&2; exit 1; }

# 1. The virtualenv and the pinned requirements.
if [[ ! -x "$venv/bin/python" ]]; then
  echo "== creating the virtualenv $venv"
  "$python" -m venv "$venv" || fail "python3 -m venv failed (on Debian/Ubuntu: apt-get install -y python3-venv)"
fi
echo "== installing $here/requirements.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

# 2. Stubs from the .proto, with the protoc bundled in grpcio-tools.
echo "== generating the stubs into $build"
rm -rf "$build"
mkdir -p "$build"
"$venv/bin/python" -m grpc_tools.protoc -I "$repo/proto" \
  --python_out="$build" --grpc_python_out="$build" --pyi_out="$build" \
  "$repo/proto/inventory/v1/inventory.proto"

# 3. The server: this repo's binary on a fresh data folder and a free loopback port.
bin="${INVENTORY_BIN:-$repo/target/release/inventory}"
if [[ ! -x "$bin" ]]; then
  [[ -z "${INVENTORY_BIN:-}" ]] || fail "INVENTORY_BIN=$bin is not an executable"
  echo "== building the server (cargo build --release --bin inventory)"
  (cd "$repo" && cargo build --release --bin inventory)
fi
data="$(mktemp -d "${TMPDIR:-/tmp}/inventory-example.XXXXXX")"
server_pid=""
cleanup() {
  local status=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f "$data/server.log" ]]; then
    echo "== server log (last 30 lines)" >&2
    tail -n 30 "$data/server.log" >&2 || true
  fi
  rm -rf "$data"
  exit $status
}
trap cleanup EXIT

# A free port: bind port 0 and read what the kernel chose (a tiny race until the server binds).
port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"
echo "== starting $bin on $addr (data $data)"
mkdir -p "$data/db"
"$bin" serve --listen "$addr" --metrics-listen off --data-dir "$data/db" >"$data/server.log" 2>&1 &
server_pid=$!

# Wait (at most 60 s) until the port accepts connections, failing early if the server died.
ready=""
for _ in $(seq 1 600); do
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited during start-up"
  if "$venv/bin/python" -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.5).close()' "$port" 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.1
done
[[ -n "$ready" ]] || fail "the server did not answer on $addr within 60 s"

# 4. The example; its exit status is the script's.
echo "== running connector.py"
SECONDS=0
INVENTORY_SERVER="$addr" INVENTORY_STUBS="$build" "$venv/bin/python" "$here/connector.py"
echo "== connector.py passed in ${SECONDS} s"
