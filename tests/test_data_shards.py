"""Token shards: the format round-trips, and every kind of corrupt shard is named in its error."""

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import data
from jaxgpt.data import shards, tokenizer


def _write_raw(path, header_ints, payload: bytes) -> str:
  header = np.zeros(256, dtype="<i4")
  header[:len(header_ints)] = header_ints
  path.write_bytes(header.tobytes() + payload)
  return str(path)


def test_round_trip(tmp_path):
  tokens = np.array([0, 1, 2, 50256, 65535, 7], dtype=np.int64)
  path = tmp_path / "a.bin"
  data.write_shard(path, tokens)
  raw = path.read_bytes()
  assert len(raw) == 1024 + 2 * len(tokens)
  assert list(np.frombuffer(raw[:12], dtype="<i4")) == [20240520, 1, len(tokens)]
  assert not np.frombuffer(raw[12:1024], dtype=np.uint8).any()
  read = data.read_shard(path, vocab_size=65536)
  assert isinstance(read, np.memmap) and read.dtype == np.uint16 and read.shape == (6,)
  np.testing.assert_array_equal(read, tokens)
  assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_empty_shard(tmp_path):
  data.write_shard(tmp_path / "e.bin", np.zeros(0, dtype=np.int32))
  assert data.read_shard(tmp_path / "e.bin", vocab_size=1).shape == (0,)


def test_write_rejects_tokens_outside_uint16(tmp_path):
  with pytest.raises(data.ShardError, match="x.bin"):
    data.write_shard(tmp_path / "x.bin", np.array([1, 65536]), version=1)
  with pytest.raises(data.ShardError, match="1-D"):
    data.write_shard(tmp_path / "y.bin", np.zeros((2, 2), dtype=np.int32))


def test_write_split_makes_numbered_shards(tmp_path):
  names = shards.write_split(tmp_path, "train", np.arange(10), max_shard_tokens=4)
  assert names == ("train_000000.bin", "train_000001.bin", "train_000002.bin")
  got = np.concatenate([data.read_shard(tmp_path / n) for n in names])
  np.testing.assert_array_equal(got, np.arange(10))


@pytest.mark.parametrize("header, payload, match", [
    ((12345, 1, 3), b"\0" * 6, "bad magic number 12345"),
    ((20240520, 3, 3), b"\0" * 6, "unsupported shard version 3"),
    ((20240520, 1, 5), b"\0" * 6, "truncated"),
    ((20240520, 1, 2), b"\0" * 6, "count mismatch"),
    ((20240520, 1, 3), b"\0" * 7, "count mismatch"),
])
def test_corrupt_shards_raise_naming_the_file(tmp_path, header, payload, match):
  path = _write_raw(tmp_path / "bad_shard.bin", header, payload)
  with pytest.raises(data.ShardError, match=match) as e:
    data.read_shard(path)
  assert path in str(e.value)


def test_truncated_header(tmp_path):
  path = tmp_path / "short.bin"
  path.write_bytes(b"\0" * 100)
  with pytest.raises(data.ShardError, match="truncated header") as e:
    data.read_shard(path)
  assert str(path) in str(e.value)


def test_missing_file(tmp_path):
  with pytest.raises(data.ShardError, match="not found") as e:
    data.read_shard(tmp_path / "nope.bin")
  assert "nope.bin" in str(e.value)


def test_token_outside_vocab(tmp_path):
  path = tmp_path / "v.bin"
  data.write_shard(path, np.array([3, 255, 256, 4]))
  data.read_shard(path)  # no vocabulary given: fine
  with pytest.raises(data.ShardError, match="token id 256 is >= the vocabulary size 256") as e:
    data.read_shard(path, vocab_size=256)
  assert str(path) in str(e.value) and "position 2" in str(e.value)
  with pytest.raises(data.ShardError, match="v.bin"):
    data.check_vocab([str(path)], 256)


def test_empty_glob_names_pattern_and_key(tmp_path):
  pattern = str(tmp_path / "fineweb_train_*.bin")
  with pytest.raises(data.ShardError) as e:
    shards.glob_shards(pattern, "data.train_pattern")
  assert pattern in str(e.value) and "data.train_pattern" in str(e.value)
  data.write_shard(tmp_path / "fineweb_train_000001.bin", np.arange(100))
  cfg = config_dict.ConfigDict(dict(name="shards", tokenizer="byte", seq_len=8,
                                    train_pattern=pattern,
                                    val_pattern=str(tmp_path / "fineweb_val_*.bin")))
  with pytest.raises(data.ShardError, match="data.val_pattern") as e:
    data.prepare(cfg)
  assert "fineweb_val_*.bin" in str(e.value)


def test_prepare_raw_shards(tmp_path):
  for k in (2, 1):  # written out of order: the glob is sorted
    data.write_shard(tmp_path / f"train_{k}.bin", np.full(50, k))
  data.write_shard(tmp_path / "val_0.bin", np.arange(50))
  cfg = config_dict.ConfigDict(dict(name="shards", tokenizer="byte", seq_len=16,
                                    train_pattern=str(tmp_path / "train_*.bin"),
                                    val_pattern=str(tmp_path / "val_*.bin")))
  spec = data.prepare(cfg)
  assert spec.train_files == (str(tmp_path / "train_1.bin"), str(tmp_path / "train_2.bin"))
  assert spec.tokenizer is None and spec.vocab_size is None and spec.token_bytes is None
  assert spec.split_tokens == {"train": 100, "val": 50}
  cfg.seq_len = 50
  with pytest.raises(ValueError, match=r"data.seq_len=50 is too long for the val split"):
    data.prepare(cfg)


def test_shards_with_a_tokenizer_json_check_its_vocab(tmp_path):
  tok = tokenizer.train_bpe("the cat sat on the mat " * 50, 260)
  tok.save(tmp_path / "tokenizer.json")
  data.write_shard(tmp_path / "train_0.bin", tok.encode("the cat sat " * 20))
  data.write_shard(tmp_path / "val_0.bin", np.array([1, 2, 3, 300, 4] * 10))
  cfg = config_dict.ConfigDict(dict(name="shards", tokenizer=str(tmp_path / "tokenizer.json"),
                                    seq_len=4, train_pattern=str(tmp_path / "train_*.bin"),
                                    val_pattern=str(tmp_path / "val_*.bin")))
  with pytest.raises(data.ShardError, match="val_0.bin"):
    data.prepare(cfg)
  data.write_shard(tmp_path / "val_0.bin", tok.encode("the mat sat " * 20))
  spec = data.prepare(cfg)
  assert spec.vocab_size == 260 and spec.token_bytes.shape == (260,)


def test_token_stream_reads_across_shards(tmp_path):
  sizes = (7, 0, 5, 11)
  tokens = np.arange(sum(sizes))
  paths, start = [], 0
  for k, n in enumerate(sizes):
    paths.append(str(tmp_path / f"s{k}.bin"))
    data.write_shard(paths[-1], tokens[start:start + n])
    start += n
  stream = data.TokenStream(paths)
  assert len(stream) == len(tokens)
  for a in range(len(tokens) + 1):
    for b in range(a, len(tokens) + 1):
      np.testing.assert_array_equal(stream.read(a, b), tokens[a:b])
  with pytest.raises(IndexError):
    stream.read(0, len(tokens) + 1)
