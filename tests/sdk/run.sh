#!/usr/bin/env bash
# SDK compatibility tests: real client packages from the registries, unmodified but for the
# gateway URL, against a freshly started `paysim up` (temporary data dir, free ports).
# Usage: tests/sdk/run.sh   (from anywhere; builds paysim first; needs npm and python3 -m venv,
# with network access to the npm registry and PyPI)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

cargo build -q -p paysim
data="$(mktemp -d)"
"$root/target/debug/paysim" up --data-dir "$data" --listen 127.0.0.1:0 --simulator-listen 127.0.0.1:0 \
  >"$data/stdout.log" 2>"$data/stderr.log" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"/venv-*   # the Python virtualenvs; logs and sandbox.json stay
}
trap cleanup EXIT
for _ in $(seq 1 200); do
  [ -s "$data/sandbox.json" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/stderr.log"; echo "paysim up exited early"; exit 1; }
  sleep 0.1
done
[ -s "$data/sandbox.json" ] || { cat "$data/stderr.log"; echo "paysim up did not write sandbox.json"; exit 1; }

status=0
echo "--- npm alipay-sdk (tests/sdk/alipay-node)"
(cd tests/sdk/alipay-node && npm ci --no-audit --no-fund --loglevel=error && node compat.mjs "$data/sandbox.json") || status=1
# The two PyPI SDKs both install a top-level `alipay` package: one virtualenv each.
for client in python-alipay-sdk alipay-sdk-python; do
  echo "--- PyPI $client (tests/sdk/alipay-python)"
  venv="$data/venv-$client"
  (python3 -m venv "$venv" \
    && "$venv/bin/pip" install -q --disable-pip-version-check -r "tests/sdk/alipay-python/requirements-$client.txt" \
    && "$venv/bin/python" tests/sdk/alipay-python/compat.py "$data/sandbox.json" "$client") || status=1
done
echo "--- npm wechatpay-axios-plugin (tests/sdk/wechatpay-node)"
(cd tests/sdk/wechatpay-node && npm ci --no-audit --no-fund --loglevel=error && node compat.mjs "$data/sandbox.json") || status=1
if [ "$status" -ne 0 ]; then
  echo "--- paysim log"
  tail -n 50 "$data/stderr.log"
fi
exit "$status"
