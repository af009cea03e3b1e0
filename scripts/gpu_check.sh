#!/usr/bin/env bash
# The GPU check of issue 17 as one command (scripts/gpu_check.py says what it measures).
#
#   bash scripts/gpu_check.sh                          # on a lent GPU: docs/benchmarks.md "GPU check"
#   bash scripts/gpu_check.sh --smoke --out /tmp/gc    # anywhere, tiny sizes (the tests run this)
#
# 1. Packages: when the Python here cannot import grain, ml_collections, optuna and tensorboardX
#    (the GPU image has none of them) and .whl/ holds wheels (scripts/fetch_gpu_wheels.sh), they
#    are installed into /tmp/jaxgpt-site, which goes on PYTHONPATH.
# 2. Data: .whl/data (the prepared Shakespeare corpus) is copied to /tmp/jaxgpt-data, the data
#    cache, unless JAXGPT_DATA_DIR is set (the GPU machine cannot download the corpus).
# 3. This checkout on PYTHONPATH (jaxgpt need not be installed), PYTHONUNBUFFERED=1, and a
#    persistent XLA compilation cache (/tmp/jaxgpt-xla-cache unless JAX_COMPILATION_CACHE_DIR).
# 4. scripts/gpu_check.py with this command's arguments; its JSON, table and log go to $OUT when
#    it is set (the device tool's output folder), else to --out (default runs/gpu_check).
# PYTHON picks the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

NEEDS="import grain, ml_collections, optuna, tensorboardX"
if ! "$PY" -c "$NEEDS" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    SITE=/tmp/jaxgpt-site
    echo "[gpu_check.sh] installing $(ls .whl/*.whl | wc -l) carried wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl || exit 1
    export PYTHONPATH="$SITE:$PYTHONPATH"
  fi
  if ! "$PY" -c "$NEEDS"; then
    echo "error: $PY lacks jaxgpt's dependencies; run scripts/fetch_gpu_wheels.sh here first" \
      "and carry .whl (docs/benchmarks.md \"GPU check\")" >&2
    exit 1
  fi
fi

if [ -z "${JAXGPT_DATA_DIR:-}" ] && [ -d .whl/data ]; then
  export JAXGPT_DATA_DIR=/tmp/jaxgpt-data
  mkdir -p "$JAXGPT_DATA_DIR" && cp -rn .whl/data/. "$JAXGPT_DATA_DIR/"
fi
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxgpt-xla-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-1}

args=("$@")
if [ -n "${OUT:-}" ]; then
  args+=(--out "$OUT")
fi
exec "$PY" scripts/gpu_check.py "${args[@]}"
