#!/usr/bin/env bash
# Bootstrap a fresh clone: system packages (as root), .venv, Python deps, configurable-http-proxy.
# Idempotent: each step is skipped when already done. Called by `make demo` / `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1mbootstrap:\033[0m %s\n' "$*"; }

# 1. Debian packages the tests need (only as root; others must install them by hand).
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  [ -x /usr/bin/chromium ] || need+=(chromium)
  fc-list 2>/dev/null | grep -qi "cjk\|wqy" || need+=(fonts-wqy-zenhei)
  [ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
  command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
  /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing Debian packages: ${need[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "${need[@]}" >/dev/null
  fi
fi

# 2. Virtualenv from Debian's interpreter, so spawned kernels of other Unix users can execute it.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if [ ! -x .venv/bin/python ]; then
  log "creating .venv from $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.bootstrap-stamp
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Python dependencies (pyproject.toml)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

# 3. configurable-http-proxy into the repo's node_modules (git-ignored).
if [ ! -x node_modules/.bin/configurable-http-proxy ]; then
  log "installing configurable-http-proxy with npm"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

# 4. Lock-down files of the single-user server inside the venv (system config users cannot edit).
if [ -f sandbox/hub/install.py ]; then
  .venv/bin/python -m sandbox.hub.install >/dev/null
fi
log "ready"
