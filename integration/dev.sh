#!/usr/bin/env bash
# Starts proctor in dev mode with real local targets (PostgreSQL, OpenSSH sshd): installs the
# target servers if missing, builds proctor, runs `proctor dev`. Extra arguments go to it,
# e.g. `integration/dev.sh --data ./dev-data`.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || need+=(openssh-server)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if command -v npm >/dev/null 2>&1; then
  npm --prefix src/api/console ci --no-audit --no-fund
  npm --prefix src/api/console run build
fi
cargo build --locked --bin proctor
if [ "$(id -u)" != 0 ]; then
  # The SSH target logs agents in as the separate user proctor-agent, which needs root.
  echo "dev.sh: not root: PostgreSQL target only (sudo integration/dev.sh for the SSH target too)" >&2
fi
exec target/debug/proctor dev "$@"
