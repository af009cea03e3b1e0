"""data.name='text': your own folder of UTF-8 files, split by whole files, tokenized, cached by
content; checked against the files' bytes (numpy, hashlib) and through the README command."""

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import config as config_lib
from jaxgpt import data
from jaxgpt.data import tokenizer
from jaxgpt.errors import ConfigError
from tests.conftest_data import split_tokens
from tests.helpers import ROOT

# Multi-byte UTF-8 (é, ö, —, 🙂), a CRLF file and files without a final newline.
TEXTS = {
    "a.txt": "Ah, the été of the wörld.\nIt rains — again.\n" * 12,
    "b.txt": "no final newline here, 🙂 " * 15,
    "c.txt": "line one\r\nline two\r\n" * 10,
    "d.txt": "Duplicated text.\n" * 20,
    "sub/d_copy.txt": "Duplicated text.\n" * 20,
    "sub/e.txt": "The last one, in a subfolder.\n" * 9,
    "f.txt": "Short and plain.\n" * 11,
}


def write_folder(root, texts=TEXTS):
  for name, text in texts.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
  return root


def text_config(tmp_path, **overrides):
  cfg = dict(name="text", tokenizer="byte", bpe_vocab_size=300, seq_len=8,
             train_pattern=str(tmp_path / "texts" / "**" / "*.txt"), val_pattern=None,
             val_fraction=None, data_dir=str(tmp_path / "cache"))
  return config_dict.ConfigDict({**cfg, **overrides})


def expected_bytes(paths) -> bytes:
  """The reference layout: each file's bytes, plus b"\\n" when it does not end with one."""
  out = b""
  for p in paths:
    raw = open(p, "rb").read()
    out += raw if raw.endswith(b"\n") else raw + b"\n"
  return out


def sha(path) -> str:
  return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_byte_text_with_a_val_pattern_is_the_files_bytes(tmp_path):
  root = write_folder(tmp_path / "texts")
  cfg = text_config(tmp_path, train_pattern=str(root / "*.txt"),
                    val_pattern=str(root / "sub" / "*.txt"))
  spec = data.prepare(cfg)
  train = sorted(str(p) for p in root.glob("*.txt"))
  val = sorted(str(p) for p in (root / "sub").glob("*.txt"))
  for split, paths in (("train", train), ("val", val)):
    want = np.frombuffer(expected_bytes(paths), np.uint8)
    np.testing.assert_array_equal(split_tokens(spec, split), want)
    assert spec.split_bytes[split] == spec.split_tokens[split] == len(want)
  assert spec.vocab_size == 256 and spec.tokenizer.name == "byte"
  # Evaluation windows cover the val bytes in order.
  batch = next(data.eval_batches(spec, "val", seq_len=8, batch_size=2))
  np.testing.assert_array_equal(batch["inputs"].reshape(-1),
                                np.frombuffer(expected_bytes(val), np.uint8)[:16])
  # A file in both splits is refused.
  cfg.val_pattern = str(root / "**" / "*.txt")
  with pytest.raises(ConfigError, match=r"data.val_pattern=.*both match .*a.txt"):
    data.prepare(cfg)


def test_held_out_fraction_is_whole_files_by_content_hash(tmp_path):
  root = write_folder(tmp_path / "texts")
  spec = data.prepare(text_config(tmp_path, val_fraction=0.34))
  paths = sorted(str(p) for p in root.rglob("*.txt"))
  distinct = sorted({sha(p) for p in paths})  # 6 distinct contents: round(0.34 * 6) = 2 held out
  val = [p for p in paths if sha(p) in distinct[:2]]
  train = [p for p in paths if p not in val]
  for split, ps in (("train", train), ("val", val)):
    np.testing.assert_array_equal(split_tokens(spec, split),
                                  np.frombuffer(expected_bytes(ps), np.uint8))
  dup = {str(root / "d.txt"), str(root / "sub" / "d_copy.txt")}
  assert dup <= set(train) or dup <= set(val)  # equal contents share a split
  # The default fraction, 0.1 of 6 files: one held out.
  meta = json.load(open(os.path.join(os.path.dirname(data.prepare(text_config(
      tmp_path)).val_files[0]), "meta.json")))
  assert meta["splits"]["val"]["documents"] == 1
  assert meta["key"]["files"]["val"] == [p for p in paths if sha(p) == distinct[0]]


def test_cache_is_keyed_by_contents(tmp_path):
  write_folder(tmp_path / "texts")
  spec = data.prepare(text_config(tmp_path))
  folder = os.path.dirname(spec.train_files[0])
  mtime = os.path.getmtime(spec.train_files[0])
  # The same contents elsewhere: the same cache folder, reused (not rewritten).
  shutil.copytree(tmp_path / "texts", tmp_path / "moved")
  moved = data.prepare(text_config(tmp_path, train_pattern=str(tmp_path / "moved/**/*.txt")))
  assert moved.train_files == spec.train_files and os.path.getmtime(moved.train_files[0]) == mtime
  # One edited file: a new folder.
  (tmp_path / "texts" / "f.txt").write_text("Edited.\n" * 11)
  edited = data.prepare(text_config(tmp_path))
  assert os.path.dirname(edited.train_files[0]) != folder


def test_bpe_is_trained_on_the_train_files_only(tmp_path):
  root = write_folder(tmp_path / "texts")
  (root / "sub" / "e.txt").write_text("zyzzyva quokka " * 40)  # only in val: never merged
  cfg = text_config(tmp_path, tokenizer="bpe", train_pattern=str(root / "*.txt"),
                    val_pattern=str(root / "sub" / "*.txt"))
  spec = data.prepare(cfg)
  train = sorted(str(p) for p in root.glob("*.txt"))
  docs = [expected_bytes([p]).decode("utf-8") for p in train]
  reference = tokenizer.train_bpe(docs, 300)
  assert spec.tokenizer.hf.get_vocab() == reference.hf.get_vocab()
  assert "zy" not in "".join(spec.tokenizer.hf.get_vocab())
  for split in ("train", "val"):
    toks = split_tokens(spec, split)
    assert int(spec.token_bytes[toks].sum()) == spec.split_bytes[split]  # exact val_bpb
  val = sorted(str(p) for p in (root / "sub").glob("*.txt"))
  assert spec.tokenizer.decode(split_tokens(spec, "val")) == expected_bytes(val).decode()
  assert spec.split_tokens["train"] < spec.split_bytes["train"]  # merges were learned


def test_text_config_errors_name_the_key(tmp_path):
  c = config_lib.base_config()
  c.data.name = "text"
  with pytest.raises(ConfigError, match="data.train_pattern=None must be set"):
    config_lib.validate(c)
  c.data.train_pattern = str(tmp_path / "*.txt")
  c.data.val_fraction = 1.5
  with pytest.raises(ConfigError, match=r"data.val_fraction=1.5 must be a number > 0 and < 1$"):
    config_lib.validate(c)
  c.data.val_fraction, c.data.val_pattern = 0.2, "x/*.txt"
  with pytest.raises(ConfigError, match="set one of them, not both"):
    config_lib.validate(c)
  c.data.val_fraction, c.data.tokenizer = None, str(tmp_path / "missing.json")
  with pytest.raises(ConfigError, match="missing.json.*no such file"):
    config_lib.validate(c)
  with pytest.raises(ConfigError, match=r"data.train_pattern=.*matches no files"):
    data.prepare(text_config(tmp_path))
  write_folder(tmp_path / "texts", {"only.txt": "one file\n" * 30})
  with pytest.raises(ConfigError, match="leaves none to train on"):
    data.prepare(text_config(tmp_path))
  (tmp_path / "texts" / "bad.txt").write_bytes(b"caf\xe9 latin-1\n" * 30)
  with pytest.raises(ConfigError, match="bad.txt is not UTF-8"):
    data.prepare(text_config(tmp_path))


def test_readme_command_trains_on_a_folder_of_text(tmp_path):
  """The README's one command (configs/gpt.py:cpu on your own folder), cut to 2 steps."""
  write_folder(tmp_path / "mytexts", {f"part{i}.txt": f"Part {i}. " + TEXTS["a.txt"] * 3
                                      for i in range(10)})
  args = ["--config", "configs/gpt.py:cpu", "--config.data.name=text",
          f"--config.data.train_pattern={tmp_path}/mytexts/*.txt",
          "--config.train.steps=2", "--config.train.eval_every=2", "--workdir",
          str(tmp_path / "run")]
  proc = subprocess.run([sys.executable, "-m", "jaxgpt.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu",
                                 JAXGPT_DATA_DIR=str(tmp_path / "cache")))
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(tmp_path / "run" / "summary.json"))
  assert summary["steps"] == 2 and summary["stop_reason"] == "steps"
  # Byte tokenizer: one byte per token, so bpb = loss / ln 2 exactly.
  np.testing.assert_allclose(summary["val_bpb"], summary["final_val_loss"] / math.log(2),
                             rtol=1e-6)
  config = json.load(open(tmp_path / "run" / "config.json"))
  assert config["data"]["name"] == "text" and config["data"]["seq_len"] == 64
