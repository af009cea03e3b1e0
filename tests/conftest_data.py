"""Fixtures for the data tests: a prepared Shakespeare cache and synthetic token shards.

Import the fixtures you use into a test module (`from tests.conftest_data import byte_spec`).
The Shakespeare cache is prepared once per test session, in $JAXGPT_DATA_DIR when that is set
(reuse a warm cache: `JAXGPT_DATA_DIR=~/.cache/jaxgpt pytest ...`), else in a temporary folder
(downloads the corpus once: about 10 s, plus about 10 s to train and apply the BPE).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import data

BPE_VOCAB = 1024
_state: dict = {}  # shared by every module that imports these fixtures (one cache per session)


def shakespeare_config(data_dir, tokenizer="byte", **overrides) -> config_dict.ConfigDict:
  cfg = dict(name="shakespeare", tokenizer=tokenizer, bpe_vocab_size=BPE_VOCAB, seq_len=64,
             train_pattern=None, val_pattern=None, folio_val=True, data_dir=str(data_dir),
             worker_count=0)
  return config_dict.ConfigDict({**cfg, **overrides})


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
  """The cache root the Shakespeare fixtures use."""
  if "data_dir" not in _state:
    env = os.environ.get("JAXGPT_DATA_DIR")
    _state["data_dir"] = Path(env).expanduser() if env else tmp_path_factory.mktemp("jaxgpt_data")
  return _state["data_dir"]


@pytest.fixture(scope="session")
def byte_spec(data_dir) -> data.DataSpec:
  """The byte-level Shakespeare corpus, with the folio split."""
  if "byte" not in _state:
    _state["byte"] = data.prepare(shakespeare_config(data_dir, "byte"))
  return _state["byte"]


@pytest.fixture(scope="session")
def bpe_spec(data_dir, byte_spec) -> data.DataSpec:
  """The Shakespeare corpus with a 1024-id byte-level BPE, with the folio split."""
  if "bpe" not in _state:
    _state["bpe"] = data.prepare(shakespeare_config(data_dir, "bpe"))
  return _state["bpe"]


def write_position_shards(folder: Path, sizes, prefix="train") -> tuple[str, ...]:
  """Shards whose tokens are their positions in the concatenated stream (mod 60000), so any
  window shows where it came from. Returns the paths in order."""
  paths, start = [], 0
  for k, n in enumerate(sizes):
    path = folder / f"{prefix}_{k:06d}.bin"
    data.write_shard(path, np.arange(start, start + n) % 60000)
    paths.append(str(path))
    start += n
  return tuple(paths)


def synthetic_spec(folder: Path, train_sizes=(5000, 3001, 0, 7000), val_sizes=(900, 1234),
                   folio_sizes=(333,)) -> data.DataSpec:
  """A DataSpec over position shards (no tokenizer), like `data.prepare` gives raw shards."""
  folder.mkdir(parents=True, exist_ok=True)
  files = {s: write_position_shards(folder, sizes, s) for s, sizes in
           (("train", train_sizes), ("val", val_sizes), ("folio", folio_sizes))}
  return data.DataSpec(
      name="shards", train_files=files["train"], val_files=files["val"],
      extra_val={"folio": files["folio"]}, vocab_size=None, tokenizer=None, token_bytes=None,
      split_tokens={s: sum(z) for s, z in (("train", train_sizes), ("val", val_sizes),
                                           ("folio", folio_sizes))}, split_bytes={})


@pytest.fixture
def synth(tmp_path) -> data.DataSpec:
  return synthetic_spec(tmp_path / "shards")


def split_tokens(spec: data.DataSpec, split: str) -> np.ndarray:
  """All tokens of a split, concatenated, as int64."""
  return np.concatenate([np.asarray(data.read_shard(p)) for p in spec.files(split)]).astype(
      np.int64)
