"""data.byte_shards: token shards whose ids are UTF-8 bytes report an exact val_bpb with no
tokenizer file (one byte per token), and ids outside a byte are refused naming the file."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import config as config_lib
from jaxgpt import data
from jaxgpt.errors import ConfigError
from tests.helpers import ROOT

TEXT = ("O, beware, my lord, of jealousy; it is the green-ey'd monster which doth mock the meat "
        "it feeds on. Caf\u00e9 \u2014 na\u00efve.\n")


def write_byte_shards(folder, train_copies=40, val_copies=6):
  raw = np.frombuffer(TEXT.encode("utf-8"), np.uint8)
  data.write_shard(folder / "bytes_train_000000.bin", np.tile(raw, train_copies // 2))
  data.write_shard(folder / "bytes_train_000001.bin", np.tile(raw, train_copies // 2))
  data.write_shard(folder / "bytes_val_000000.bin", np.tile(raw, val_copies))
  return len(raw)


def shard_config(folder, **overrides):
  cfg = dict(name="shards", tokenizer="byte", seq_len=16, byte_shards=True,
             train_pattern=str(folder / "bytes_train_*.bin"),
             val_pattern=str(folder / "bytes_val_*.bin"))
  return config_dict.ConfigDict({**cfg, **overrides})


def test_byte_shards_have_the_byte_tokenizer(tmp_path):
  n = write_byte_shards(tmp_path)
  spec = data.prepare(shard_config(tmp_path))
  assert spec.vocab_size == 256 and spec.tokenizer.name == "byte"
  np.testing.assert_array_equal(spec.token_bytes, np.ones(256))
  assert spec.split_bytes == spec.split_tokens == {"train": 40 * n, "val": 6 * n}
  assert spec.tokenizer.decode(data.read_shard(spec.val_files[0])[:n]) == TEXT
  raw = data.prepare(shard_config(tmp_path, byte_shards=None))  # unset: raw ids, as before
  assert raw.tokenizer is None and raw.token_bytes is None and raw.split_bytes == {}
  data.write_shard(tmp_path / "bytes_val_000000.bin", np.array([65, 300, 66] * 20))
  with pytest.raises(data.ShardError, match=r"bytes_val_000000.bin.*300.*data.byte_shards"):
    data.prepare(shard_config(tmp_path))


def test_byte_shards_config_checks():
  c = config_lib.base_config()
  c.data.update(name="shards", train_pattern="t*.bin", val_pattern="v*.bin")
  with pytest.raises(ConfigError, match="model.vocab_size=None must be set"):
    config_lib.validate(c)
  c.data.byte_shards = True
  config_lib.validate(c)  # byte shards need no model.vocab_size
  c.data.tokenizer = "gpt2/tokenizer.json"
  with pytest.raises(ConfigError, match="data.byte_shards=True and data.tokenizer="):
    config_lib.validate(c)


def test_byte_shards_train_with_exact_val_bpb(tmp_path):
  n = write_byte_shards(tmp_path, train_copies=200, val_copies=10)
  args = ["--config", "configs/gpt.py:test", "--config.data.name=shards",
          "--config.data.byte_shards=true", f"--config.data.train_pattern={tmp_path}/"
          "bytes_train_*.bin", f"--config.data.val_pattern={tmp_path}/bytes_val_*.bin",
          "--config.train.steps=2", "--config.train.eval_every=2",
          "--workdir", str(tmp_path / "run")]
  proc = subprocess.run([sys.executable, "-m", "jaxgpt.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(tmp_path / "run" / "summary.json"))
  assert summary["val_bpb"] is not None and summary["final_val_tokens"] == 10 * n - 1
  np.testing.assert_allclose(summary["val_bpb"], summary["final_val_loss"] / math.log(2),
                             rtol=1e-6)
