#!/usr/bin/env bash
# Build the peer systems' own virtualenvs (they cannot share ours):
#   smartnoise  smartnoise-sql 1.0.10 (needs opendp < 0.15, pandas < 3)
#   tumult      tmlt-analytics 0.21 (pyspark 3.5, Java 17)
#   polars      opendp[polars] 0.16 (OpenDP's own Context API)
# Usage: bench/peers/setup.sh [smartnoise|tumult|polars ...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=bench/.peers
mkdir -p "$root"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
want=("$@"); [ ${#want[@]} -gt 0 ] || want=(smartnoise tumult polars)
for name in "${want[@]}"; do
  venv="$root/$name"
  [ -x "$venv/bin/python" ] && [ -f "$venv/.ok" ] && { echo "peer $name: ready"; continue; }
  echo "peer $name: building $venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  case "$name" in
    smartnoise) "$venv/bin/pip" install -q "smartnoise-sql==1.0.10" "psycopg2-binary" "psutil" ;;
    tumult)     "$venv/bin/pip" install -q "tmlt.analytics==0.21.*" "pyspark>=3.5,<3.6" "pandas<3" "pyarrow" "psutil" ;;
    polars)     "$venv/bin/pip" install -q "opendp[polars]==0.16.*" "psutil" "duckdb>=2,<3" "pyarrow" ;;
    *) echo "unknown peer $name" >&2; exit 2 ;;
  esac
  touch "$venv/.ok"
done
