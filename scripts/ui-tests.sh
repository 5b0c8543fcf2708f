#!/usr/bin/env bash
# The web UI's browser tests, as CI runs them: Debian's Chromium (installed
# with apt when missing), the UI's npm packages (npm ci, from
# ui/package-lock.json), the UI built into ui/dist, a simulated controller
# pair serving it (scripts/sim-pair.sh), then `node --test ui/tests/`. The
# pair is always stopped. Screenshots land in ui/screenshots/.
#
# Needs the binaries: cargo build --workspace --bins (test.sh builds them
# first). Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=$SECONDS
step() { echo "== ui: $* ($((SECONDS - start)) s)"; }

if [ ! -x /usr/bin/chromium ]; then
  step "installing chromium"
  timeout 300 apt-get update -q
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends chromium
fi
/usr/bin/chromium --version 2>/dev/null | head -1

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "ui-tests: Node.js 20 or later is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

step "npm ci"
(cd ui && timeout 600 npm ci --no-audit --no-fund --loglevel=error)

step "building the UI"
(cd ui && timeout 300 node build.mjs)

dir=$(mktemp -d /tmp/duplex-ui-tests.XXXXXX)
ok=0
finish() {
  timeout 60 scripts/sim-pair.sh down "$dir" || true
  if [ "$ok" = 1 ]; then
    rm -rf "$dir"
  else
    # What the daemons said, for a failure.
    for f in "$dir"/A/*.log "$dir"/B/*.log; do
      [ -f "$f" ] || continue
      echo "--- last lines of $f"
      tail -n 15 "$f"
    done
    echo "ui-tests: failed; the pair's files are in $dir" >&2
  fi
}
trap finish EXIT

step "starting the simulated pair"
timeout 300 scripts/sim-pair.sh up "$dir" > /dev/null
set -a
# shellcheck disable=SC1091
. "$dir/env"
set +a

step "browser tests"
rm -rf ui/screenshots
timeout 900 node --test --test-reporter=spec ui/tests/
ok=1
step "done; screenshots in $repo/ui/screenshots"
