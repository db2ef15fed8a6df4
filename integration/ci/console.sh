#!/usr/bin/env bash
# Browser tests of the web console: `proctor dev` with real PostgreSQL and sshd, real psql and
# ssh clients, Debian's Chromium driven headless by playwright-core (never a downloaded browser).
# Screenshots and timings land in target/console-artifacts/. Needs npm, the built console
# (integration/test.sh builds it before cargo) and /usr/bin/chromium (test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v npm >/dev/null 2>&1; then
  echo "console browser tests skipped: npm is not installed, so the console is not built"
  exit 0
fi
[ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium is missing: apt-get install -y chromium"; exit 1; }
[ -f src/api/console/dist/index.html ] || { echo "the console is not built: npm --prefix src/api/console run build, then cargo build"; exit 1; }
[ -d src/api/console/node_modules/playwright-core ] || npm --prefix src/api/console ci --no-audit --no-fund
[ -x target/debug/proctor ] || cargo build --locked --bin proctor
rm -rf target/console-artifacts
node --test --test-concurrency=1 src/api/console/tests/
