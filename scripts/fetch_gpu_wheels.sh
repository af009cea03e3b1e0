#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with what the lent GPU machine lacks, for scripts/gpu_check.sh to
# carry: the wheels of the Python packages its image does not have, and the prepared Shakespeare
# corpus (that machine reaches no network, so it can neither pip-install nor download the corpus).
#
#   bash scripts/fetch_gpu_wheels.sh            # run once, here, in the repository root
#   PYTHON=.venv/bin/python bash scripts/fetch_gpu_wheels.sh
#
# The image (Python 3.12, jax 0.11 with the CUDA 13 plugin) has flax, optax, orbax-checkpoint,
# chex, absl-py, numpy, tqdm, matplotlib, tokenizers, etils, fsspec, protobuf, cloudpickle,
# PyYAML, psutil, MarkupSafe, attrs, typing-extensions and packaging; it lacks grain,
# ml-collections, optuna and tensorboardX. `pip download --no-deps` fetches no dependencies, so
# every missing one is named below with the package that needs it. Versions are the ones the
# CPU test machines run. Wheels: CPython 3.12, manylinux x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's jaxgpt
DEST=.whl

WHEELS=(
  grain==0.2.18            # data pipeline
  array_record==0.8.6      #   needed by grain (Linux)
  portpicker==1.6.0        #   needed by grain (needs psutil: in the image)
  ml_collections==1.1.0    # configs (needs absl-py, PyYAML: in the image)
  tensorboardX==2.6.5      # metrics (needs numpy, packaging, protobuf: in the image)
  optuna==5.1.0            # sweeps
  alembic==1.20.1          #   needed by optuna
  SQLAlchemy==2.1.9        #   needed by optuna and alembic
  Mako==1.4.3              #   needed by alembic (needs MarkupSafe: in the image)
  colorlog==6.12.0         #   needed by optuna
)

mkdir -p "$DEST"
rm -f "$DEST"/*.whl  # one version of each: two would stop the install
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${WHEELS[@]}"
got=$(ls "$DEST"/*.whl | wc -l)
if [ "$got" -ne "${#WHEELS[@]}" ]; then
  echo "error: expected ${#WHEELS[@]} wheels in $DEST, found $got" >&2
  exit 1
fi

# The corpus: split texts and the BPE-1024 tokenization (gated nGPT's data), prepared here; the
# byte tokenization is rebuilt there from the texts in a second.
"$PY" scripts/prepare_data.py --tokenizer bpe --bpe_vocab_size 1024 >/dev/null
SRC=$("$PY" -c "from jaxgpt.data import cache; print(cache.data_dir() / 'shakespeare')")
rm -rf "$DEST/data"
mkdir -p "$DEST/data/shakespeare"
cp -r "$SRC/corpus" "$SRC/bpe1024" "$DEST/data/shakespeare/"
du -sh "$DEST"
ls "$DEST"
