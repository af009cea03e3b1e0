"""uint32 token shards (header version 2): the writer picks the version, every reader path
accepts both, version-1 readers refuse version 2, and uint16 shards stay byte for byte the
modded-nanogpt / parameter-golf format. References are written here with numpy alone."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import data
from jaxgpt.data import shards, tokenizer
from tests.conftest_data import split_tokens

MAGIC = 20240520


def pg_write_datafile(path, toks) -> None:
  """A version-1 shard as parameter-golf's `write_datafile` writes one (header of 256 int32:
  magic, version 1, token count; then uint16 tokens)."""
  header = np.zeros(256, dtype="<i4")
  header[0], header[1], header[2] = MAGIC, 1, len(toks)
  with open(path, "wb") as f:
    f.write(header.tobytes())
    f.write(np.asarray(toks).astype("<u2").tobytes())


def pg_load_data_shard(path) -> np.ndarray:
  """parameter-golf's `load_data_shard` checks (modded-nanogpt's are the same): magic, version
  1, size; then uint16 tokens."""
  header = np.fromfile(path, dtype="<i4", count=256)
  if header.size != 256 or int(header[0]) != MAGIC or int(header[1]) != 1:
    raise ValueError(f"Unexpected shard header for {path}")
  num_tokens = int(header[2])
  if os.path.getsize(path) != 1024 + 2 * num_tokens:
    raise ValueError(f"Shard size mismatch for {path}")
  return np.fromfile(path, dtype="<u2", count=num_tokens, offset=1024)


def header_of(path) -> list[int]:
  return [int(v) for v in np.fromfile(path, dtype="<i4", count=3)]


def shards_config(folder: Path, **overrides) -> config_dict.ConfigDict:
  cfg = dict(name="shards", tokenizer="byte", seq_len=8,
             train_pattern=str(folder / "train_*.bin"), val_pattern=str(folder / "val_*.bin"))
  return config_dict.ConfigDict({**cfg, **overrides})


# ------------------------------------------------------------------------------------------
# The format.

@pytest.mark.parametrize("vocab_size, max_id, version", [
    (None, 65535, 1), (65536, 65535, 1), (50257, 0, 1), (None, 65536, 2), (65537, 5, 2),
    (200_000, 199_999, 2)])
def test_version_choice(vocab_size, max_id, version):
  assert shards.shard_version(vocab_size, max_id) == version


def test_v1_is_byte_for_byte_the_parameter_golf_format(tmp_path):
  toks = np.array([0, 1, 50256, 65535, 7, 7], dtype=np.int64)
  assert data.write_shard(tmp_path / "ours.bin", toks, vocab_size=65536) == 1
  pg_write_datafile(tmp_path / "theirs.bin", toks)
  assert (tmp_path / "ours.bin").read_bytes() == (tmp_path / "theirs.bin").read_bytes()
  np.testing.assert_array_equal(pg_load_data_shard(tmp_path / "ours.bin"), toks)
  theirs = data.read_shard(tmp_path / "theirs.bin", vocab_size=65536)
  assert theirs.dtype == np.uint16
  np.testing.assert_array_equal(theirs, toks)


def test_v2_round_trip_keeps_ids_above_65535(tmp_path):
  toks = np.array([0, 65535, 65536, 70_000, 199_999, 3], dtype=np.int64)
  path = tmp_path / "big.bin"
  assert data.write_shard(path, toks) == 2  # an id that does not fit uint16
  raw = path.read_bytes()
  assert len(raw) == 1024 + 4 * len(toks) and header_of(path) == [MAGIC, 2, len(toks)]
  np.testing.assert_array_equal(np.frombuffer(raw[1024:], "<u4"), toks)
  read = data.read_shard(path, vocab_size=200_000)
  assert read.dtype == np.uint32
  np.testing.assert_array_equal(read, toks)
  with pytest.raises(data.ShardError, match="token id 199999 is >= the vocabulary size 100000"):
    data.read_shard(path, vocab_size=100_000)
  # A vocabulary above 65,536 makes a version-2 shard even when every id is small.
  assert data.write_shard(tmp_path / "small_ids.bin", np.arange(5), vocab_size=65537) == 2
  assert header_of(tmp_path / "small_ids.bin")[1] == 2


def test_v1_only_readers_refuse_v2(tmp_path):
  data.write_shard(tmp_path / "v2.bin", np.array([1, 2, 100_000]))
  with pytest.raises(ValueError, match="Unexpected shard header"):
    pg_load_data_shard(tmp_path / "v2.bin")
  data.write_shard(tmp_path / "v1.bin", np.array([1, 2, 3]))
  np.testing.assert_array_equal(pg_load_data_shard(tmp_path / "v1.bin"), [1, 2, 3])


@pytest.mark.parametrize("vocab_size, version", [(70_000, 1), ((1 << 31) + 1, None),
                                                 ((1 << 31) + 1, 2)])
def test_a_vocabulary_that_does_not_fit_names_its_size(tmp_path, vocab_size, version):
  with pytest.raises(data.ShardError, match=rf"x.bin: vocabulary size {vocab_size} does not "
                                            rf"fit version-{version or 2} shards"):
    data.write_shard(tmp_path / "x.bin", np.arange(3), vocab_size=vocab_size, version=version)
  assert not (tmp_path / "x.bin").exists()


def test_ids_outside_the_vocabulary_or_dtype_are_refused(tmp_path):
  with pytest.raises(data.ShardError, match=r"y.bin: token ids must lie in \[0, the vocabulary "
                                            r"size 300\), got \[0, 300\]"):
    data.write_shard(tmp_path / "y.bin", np.array([0, 300]), vocab_size=300)
  with pytest.raises(data.ShardError, match=r"z.bin: token ids must lie in \[0, 65,536 to fit "
                                            r"uint16\), got \[0, 65536\]"):
    data.write_shard(tmp_path / "z.bin", np.array([0, 65536]), version=1)
  with pytest.raises(data.ShardError, match=r"n.bin: .*got \[-1, 2\]"):
    data.write_shard(tmp_path / "n.bin", np.array([-1, 2]))


@pytest.mark.parametrize("version, payload, match", [
    (2, 4 * 3, None), (2, 2 * 3, "truncated"), (2, 4 * 3 + 2, "count mismatch"),
    (3, 4 * 3, "unsupported shard version 3")])
def test_v2_sizes_are_checked(tmp_path, version, payload, match):
  header = np.zeros(256, "<i4")
  header[:3] = (MAGIC, version, 3)
  path = tmp_path / "s.bin"
  path.write_bytes(header.tobytes() + b"\1" * payload)
  if match is None:
    assert data.read_shard(path).tolist() == [0x01010101] * 3
  else:
    with pytest.raises(data.ShardError, match=match):
      data.read_shard(path)


def test_write_split_uses_one_version_per_split(tmp_path):
  toks = np.array([5, 6, 7, 8, 70_000])  # only the last shard holds a large id
  names = shards.write_split(tmp_path, "train", toks, max_shard_tokens=2)
  assert [header_of(tmp_path / n)[1] for n in names] == [2, 2, 2]
  np.testing.assert_array_equal(np.concatenate([data.read_shard(tmp_path / n) for n in names]),
                                toks)


# ------------------------------------------------------------------------------------------
# Through the real pipeline: training and evaluation windows.

def _contiguous(stream: np.ndarray, window: np.ndarray) -> bool:
  n = len(window)
  return any(np.array_equal(stream[s:s + n], window) for s in range(len(stream) - n + 1))


def test_parameter_golf_and_v2_shards_through_the_pipeline(tmp_path):
  rng = np.random.default_rng(0)
  train = [rng.integers(0, 65536, 300), rng.integers(0, 200_000, 500), rng.integers(0, 9, 200)]
  pg_write_datafile(tmp_path / "train_000000.bin", train[0])  # parameter-golf's own writer
  data.write_shard(tmp_path / "train_000001.bin", train[1], vocab_size=200_000)  # version 2
  data.write_shard(tmp_path / "train_000002.bin", train[2])  # version 1
  val = rng.integers(65_536, 200_000, 101)
  data.write_shard(tmp_path / "val_000000.bin", val)
  assert [header_of(tmp_path / f"train_00000{k}.bin")[1] for k in range(3)] == [1, 2, 1]
  spec = data.prepare(shards_config(tmp_path))
  assert spec.split_tokens == {"train": 1000, "val": 101}
  stream = np.concatenate(train)
  np.testing.assert_array_equal(split_tokens(spec, "train"), stream)
  it = data.train_iterator(spec, seq_len=8, global_batch_size=16, seed=1)
  for _ in range(20):  # 2.5 epochs of 124 windows: every window is a run of the stream
    batch = next(it)
    assert batch["inputs"].dtype == np.int32
    for x, y in zip(batch["inputs"], batch["targets"]):
      assert _contiguous(stream, np.concatenate([x, y[-1:]]))
  it.close()
  targets, weights = [], []
  for b in data.eval_batches(spec, "val", seq_len=8, batch_size=4):
    targets.append(b["targets"].reshape(-1))
    weights.append(b["weights"].reshape(-1))
  targets, weights = np.concatenate(targets), np.concatenate(weights)
  np.testing.assert_array_equal(targets[weights > 0], val[1:])  # every target once, exact
  assert targets.max() > 65535
  data.check_vocab(spec.train_files + spec.val_files, 200_000)
  with pytest.raises(data.ShardError, match="val_000000.bin: token id"):
    data.check_vocab(spec.val_files, 65536)


# ------------------------------------------------------------------------------------------
# The document caches (text, tfds) with a vocabulary above 65,536, and val_bpb's bytes.

TEXT = ("Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n"
        "What's in a name? That which we call a rose\nBy any other word would smell as sweet.\n"
        "Juliet: caf\u00e9 \u2014 \u65e5\u672c \U0001f642\n")


def big_tokenizer(path: Path) -> tokenizer.HFTokenizer:
  """A byte-level BPE (trained on lowercase text) with 66,000 special padding ids added, then
  "Romeo" and "Juliet" as (non-special) added tokens: 66,302 ids, those two above 65,535."""
  tok = tokenizer.train_bpe(TEXT.lower() * 4, 300)
  tok.hf.add_special_tokens([f"<|pad{i}|>" for i in range(66_000)])
  tok.hf.add_tokens(["Romeo", "Juliet"])
  tok.hf.save(str(path))
  return tokenizer.load_tokenizer(str(path))


def test_text_cache_writes_v2_and_val_bpb_counts_the_text(tmp_path):
  tok = big_tokenizer(tmp_path / "big.json")
  assert tok.vocab_size == 66_302 and tok.hf.token_to_id("Romeo") == 66_300
  assert tok.token_bytes[66_300] == 5 and tok.token_bytes[1000] == 0  # "Romeo", a padding id
  folder = tmp_path / "texts"
  folder.mkdir()
  (folder / "a.txt").write_text(TEXT * 3, encoding="utf-8")
  (folder / "b.txt").write_text(TEXT[::-1] + TEXT, encoding="utf-8")
  cfg = config_dict.ConfigDict(dict(
      name="text", tokenizer=str(tmp_path / "big.json"), seq_len=8, bpe_vocab_size=300,
      train_pattern=str(folder / "a.txt"), val_pattern=str(folder / "b.txt"),
      val_fraction=None, data_dir=str(tmp_path / "cache")))
  spec = data.prepare(cfg)
  for split, text in (("train", TEXT * 3), ("val", TEXT[::-1] + TEXT)):
    assert all(header_of(f)[1] == 2 for f in spec.files(split))
    toks = split_tokens(spec, split)
    assert toks.max() > 65535 and spec.tokenizer.decode(toks) == text
    assert int(spec.token_bytes[toks].sum()) == spec.split_bytes[split] == len(text.encode())
  meta = json.loads((Path(spec.val_files[0]).parent / "meta.json").read_text())
  assert meta["lossy"] is None and meta["tokenizer_kind"] == "byte_level"
  assert meta["splits"]["val"]["token_bytes"] == meta["splits"]["val"]["bytes"]
  _check_val_bpb(spec, TEXT[::-1] + TEXT)


def _check_val_bpb(spec, val_text: str) -> None:
  """The eval step's bytes over the whole val split are the text's UTF-8 bytes minus those of
  the first token (never a target); uniform logits give val_bpb = ln V / ln 2 x tokens / bytes."""
  import jax.numpy as jnp

  from jaxgpt.train import setup as setup_lib
  from jaxgpt.train import step as step_lib
  vocab = setup_lib.padded_vocab(spec.vocab_size)
  tb = jnp.asarray(setup_lib.token_bytes_array(spec, vocab))
  apply_fn = lambda variables, x_bt: jnp.zeros(x_bt.shape + (vocab,), jnp.float32)
  eval_step = step_lib.make_eval_step(apply_fn, tb)
  sums = {}
  for b in data.eval_batches(spec, "val", seq_len=8, batch_size=4):
    for k, v in eval_step(None, b).items():
      sums[k] = sums.get(k, 0.0) + float(v)
  out = step_lib.summarize_eval(sums)
  first = spec.tokenizer.decode(split_tokens(spec, "val")[:1])
  want_bytes = len(val_text.encode()) - len(first.encode())
  assert out["val_bytes"] == want_bytes and out["val_tokens"] == spec.split_tokens["val"] - 1
  np.testing.assert_allclose(out["val_bpb"],
                             math.log(vocab) / math.log(2) * out["val_tokens"] / want_bytes,
                             rtol=1e-5)


def test_tfds_cache_writes_v2(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  big_tokenizer(tmp_path / "big.json")
  docs = {"train": [TEXT.encode(), "Juliet alone.", ""], "test": [TEXT * 2]}
  source = lambda builder, split, **kw: [{"text": t} for t in docs[split]]
  cfg = config_dict.ConfigDict(dict(
      name="tfds", tokenizer=str(tmp_path / "big.json"), bpe_vocab_size=300, seq_len=8,
      tfds_name="lm1b", tfds_train_split=None, tfds_val_split="test", tfds_text_key=None,
      tfds_data_dir=None, data_dir=str(tmp_path / "cache")))
  with tfds.testing.mock_data(as_data_source_fn=source):
    spec = data.prepare(cfg)
  want = {"train": TEXT + "Juliet alone.\n", "val": TEXT * 2}
  for split, text in want.items():
    assert all(header_of(f)[1] == 2 for f in spec.files(split))
    toks = split_tokens(spec, split)
    assert toks.max() > 65535 and spec.tokenizer.decode(toks) == text
    assert int(spec.token_bytes[toks].sum()) == spec.split_bytes[split] == len(text.encode())
