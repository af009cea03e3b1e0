"""SentencePiece tokenizers and parameter-golf's data: training with its settings, the `.model`
kind (byte counts, lossy detection, the BOS boundary), val_bpb_pg against a plain loop over
pieces, its shard format written here with numpy and read through `data.name=shards`, the
fetch of its published shards (through a stand-in for the hub), and the embedded corpus with
`data.tokenizer="spm1024"`."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import data
from jaxgpt.data import mixture, pgolf, prepare_corpus, shakespeare, shards, spm
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.errors import ConfigError
from jaxgpt.train import evaluate
from tests.conftest_data import data_dir, shakespeare_config  # noqa: F401 - fixture
from tests.helpers import HAMLET

pytest.importorskip("sentencepiece")

TEXT = HAMLET
DOCS = [TEXT[i:i + 180] for i in range(0, len(TEXT), 180)] + [
    "Caf\u00e9 \u2014 \u03a9\u03bc\u03ad\u03b3\u03b1 in 1603, 42%", "  two  spaces\tand a tab"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
  """A 400-id SentencePiece BPE with parameter-golf's settings, saved as a .model file."""
  path = tmp_path_factory.mktemp("spm") / "tok.model"
  spm.train_spm(DOCS * 4, 400).save(path)
  return path


def write_pg_shard(path: Path, tokens) -> None:
  """A shard as parameter-golf's `write_datafile` lays it out (numpy only, not jaxgpt's
  writer): 256 little-endian int32 (magic, version 1, count), then little-endian uint16."""
  header = np.zeros(256, dtype="<i4")
  header[0], header[1], header[2] = 20240520, 1, len(tokens)
  path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes())


def pg_documents(tok, docs) -> np.ndarray:
  """parameter-golf's layout: every document is [bos 1] + encode(text), no EOS."""
  return np.concatenate([[1] + list(tok.sp.encode(d, out_type=int)) for d in docs])


def loop_pg_bytes(sp, tokens) -> int:
  """parameter-golf's byte count written as a plain loop over the pieces of the targets."""
  total = 0
  for prev, cur in zip(tokens[:-1], tokens[1:]):
    prev, cur = int(prev), int(cur)
    if sp.is_control(cur) or sp.is_unknown(cur) or sp.is_unused(cur):
      continue
    if sp.is_byte(cur):
      total += 1
      continue
    piece = sp.id_to_piece(cur)
    if piece.startswith("\u2581"):
      piece = piece[1:]
      after_boundary = sp.is_control(prev) or sp.is_unknown(prev) or sp.is_unused(prev)
      total += 0 if after_boundary else 1
    total += len(piece.encode("utf-8"))
  return total


def shards_config(folder: Path, tokenizer, **overrides) -> config_dict.ConfigDict:
  cfg = dict(name="shards", tokenizer=str(tokenizer), seq_len=16, bos_id=1,
             train_pattern=str(folder / "fineweb_train_*.bin"),
             val_pattern=str(folder / "fineweb_val_*.bin"), align_to_bos=False)
  return config_dict.ConfigDict({**cfg, **overrides})


def test_train_spm_has_parameter_golf_settings_and_is_deterministic(model_path):
  tok = tokenizer_lib.load_tokenizer(str(model_path))
  sp = tok.sp
  assert [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
  assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
  assert all(sp.is_byte(i) for i in range(4, 260)) and sp.id_to_piece(4 + 0x41) == "<0x41>"
  assert model_path.read_bytes() == spm.train_spm(DOCS * 4, 400).proto  # deterministic
  pieces = [sp.id_to_piece(i) for i in sp.encode("  lead 1603", out_type=int)]
  assert not pieces[0].startswith("\u2581")  # no dummy prefix, leading spaces dropped
  assert all(len(p) <= 2 for p in pieces if any(c.isdigit() for c in p))  # split_digits
  assert tok.bos_id is None and tok.with_boundary().bos_id == 1
  assert tok.with_boundary().decode([1, *tok.encode("to be")]) == "to be"


def test_token_bytes_follow_the_pieces(model_path):
  tok = tokenizer_lib.load_tokenizer(str(model_path))
  sp = tok.sp
  for i in range(tok.vocab_size):
    piece = sp.id_to_piece(i)
    want = (0 if sp.is_control(i) or sp.is_unknown(i) else 1 if sp.is_byte(i)
            else len(piece.replace("\u2581", " ").encode("utf-8")))
    assert tok.token_bytes[i] == want, piece
  # On normalized text (what nmt_nfkc leaves) the bytes add up exactly.
  text = "Whether 'tis nobler in the mind, caf\u00e9 \u03a9 1603"
  assert tok.decode(tok.encode(text)) == text
  assert tok.token_bytes[tok.encode(text)].sum() == len(text.encode("utf-8"))


def test_nmt_nfkc_is_detected_as_lossy(model_path):
  tok = tokenizer_lib.load_tokenizer(str(model_path))
  reason = tokenizer_lib.lossy_reason(tok, "one\ntwo  three\n")
  assert reason is not None and "decode(encode(text)) != text" in reason


def test_not_a_sentencepiece_model_is_one_line(tmp_path, model_path):
  bad = tmp_path / "bad.model"
  bad.write_bytes(b"this is not a model proto")
  folder = tmp_path / "pg"
  folder.mkdir()
  for split in ("train", "val"):
    write_pg_shard(folder / f"fineweb_{split}_000000.bin", [1, 5, 6, 7] * 10)
  with pytest.raises(ConfigError) as e:
    data.prepare(shards_config(folder, bad))
  assert str(bad) in str(e.value) and "not a SentencePiece model" in str(e.value)
  assert "\n" not in str(e.value)


def test_parameter_golf_shards_read_through_shards(tmp_path, model_path):
  tok = tokenizer_lib.load_tokenizer(str(model_path))
  folder = tmp_path / "pg"
  folder.mkdir()
  val_n = pg_documents(tok, DOCS[:3])
  train_parts = [pg_documents(tok, DOCS[3:]), pg_documents(tok, DOCS[:4])]
  write_pg_shard(folder / "fineweb_val_000000.bin", val_n)
  for k, part in enumerate(train_parts):
    write_pg_shard(folder / f"fineweb_train_{k:06d}.bin", part)
  cfg = shards_config(folder, model_path, align_to_bos=True)
  spec = data.prepare(cfg)
  assert spec.tokenizer.kind == "sentencepiece" and spec.vocab_size == tok.vocab_size
  assert data.bos_id(cfg, spec) == 1
  stream = data.TokenStream(spec.train_files)
  np.testing.assert_array_equal(stream.read(0, len(stream)), np.concatenate(train_parts))
  batch = next(iter(data.eval_batches(spec, "val", seq_len=16, batch_size=2)))
  np.testing.assert_array_equal(batch["inputs"][0], val_n[:16])
  np.testing.assert_array_equal(batch["targets"][0], val_n[1:17])
  # Document-aligned windows start at a BOS (or k x seq_len inside a document).
  aligned = mixture.training_spec(spec, cfg)
  it = data.train_iterator(aligned, seq_len=16, global_batch_size=4, seed=0)
  inputs = next(it)["inputs"]
  train_n = np.concatenate(train_parts)
  starts = {i for i in range(len(train_n)) if train_n[i] == 1}
  for row in inputs:
    at = [i for i in range(len(train_n) - 16) if np.array_equal(train_n[i:i + 16], row)]
    assert any(min((a - s) for s in starts if s <= a) % 16 == 0 for a in at)
  # A data.bos_id that is not a control id of the model is refused.
  with pytest.raises(ConfigError, match="data.bos_id=5"):
    data.prepare(shards_config(folder, model_path, bos_id=5))


@pytest.mark.parametrize("header, what", [
    ((20240521, 1, 40), "bad magic"), ((20240520, 7, 40), "unsupported shard version"),
    ((20240520, 1, 41), "truncated"), ((20240520, 1, 39), "token count mismatch")])
def test_a_wrong_header_is_one_line_naming_the_file(tmp_path, model_path, header, what):
  folder = tmp_path / "pg"
  folder.mkdir()
  write_pg_shard(folder / "fineweb_train_000000.bin", [1, 5, 6, 7] * 10)
  bad = folder / "fineweb_val_000000.bin"
  head = np.zeros(256, dtype="<i4")
  head[:3] = header
  bad.write_bytes(head.tobytes() + np.asarray([1, 5, 6, 7] * 10, dtype="<u2").tobytes())
  with pytest.raises(shards.ShardError) as e:
    data.prepare(shards_config(folder, model_path))
  assert str(bad) in str(e.value) and what in str(e.value) and "\n" not in str(e.value)


def test_a_vocabulary_that_does_not_fit_the_shards_is_one_line(tmp_path):
  import tokenizers
  from tokenizers import models, pre_tokenizers
  vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(70_000)}}
  hf = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  hf.pre_tokenizer = pre_tokenizers.Whitespace()
  hf.save(str(tmp_path / "big.json"))
  folder = tmp_path / "pg"
  folder.mkdir()
  for split in ("train", "val"):
    write_pg_shard(folder / f"fineweb_{split}_000000.bin", [1, 5, 6, 7] * 10)
  with pytest.raises(shards.ShardError) as e:
    data.prepare(shards_config(folder, tmp_path / "big.json", bos_id=None))
  message = str(e.value)
  assert "vocabulary size 70001 does not fit version-1 shards" in message
  assert "fineweb_train_000000.bin" in message and "\n" not in message


def test_val_bpb_pg_against_a_loop_over_pieces(tmp_path, model_path):
  tok = tokenizer_lib.load_tokenizer(str(model_path))
  tokens = pg_documents(tok, DOCS)
  assert tokenizer_lib.pg_bytes(tok.pg_tables(), tokens) == loop_pg_bytes(tok.sp, tokens)
  # The table count: the "\u2581" after a BOS is a space byte for val_bpb, none for pg.
  leading = tok.sp.piece_to_id("\u2581to")
  pair = np.asarray([1, leading, leading])
  assert loop_pg_bytes(tok.sp, pair) == tok.token_bytes[pair[1:]].sum() - 1
  # Through evaluation: a stand-in eval step that scores every target at a fixed loss.
  folder = tmp_path / "pg"
  folder.mkdir()
  write_pg_shard(folder / "fineweb_train_000000.bin", tokens)
  write_pg_shard(folder / "fineweb_val_000000.bin", tokens)
  cfg = config_dict.ConfigDict({"data": shards_config(folder, model_path), "train": dict(
      eval_batch_size=3, batch_size=3, grad_accum=1)})
  spec = data.prepare(cfg.data)

  def eval_fn(params, batch):
    w = batch["weights"]
    return {"loss_sum": 0.7 * w.sum(), "correct_sum": 0.0 * w.sum(), "tokens": w.sum(),
            "bytes": (tok.token_bytes[batch["targets"]] * w).sum()}

  for max_tokens in (None, 40):
    ev = evaluate.evaluate_trials(spec, cfg, eval_fn, None, "val", max_tokens, lambda b: b)[0]
    n = ev["val_tokens"]
    assert n == (len(tokens) - 1 if max_tokens is None else 40)
    want = loop_pg_bytes(tok.sp, tokens[:n + 1])
    assert ev["val_bytes_pg"] == want
    assert ev["val_loss"] == pytest.approx(0.7, rel=1e-6)
    assert ev["val_bpb_pg"] == pytest.approx(ev["val_loss"] * n / (math.log(2) * want),
                                             rel=1e-12)
    assert ev["val_bytes"] == tok.token_bytes[tokens[1:n + 1]].sum()
  # Not a SentencePiece tokenizer: no val_bpb_pg.
  byte_folder = tmp_path / "bytes"
  byte_folder.mkdir()
  for split in ("train", "val"):
    write_pg_shard(byte_folder / f"fineweb_{split}_000000.bin", list(b"to be or not" * 9))
  byte_spec = data.prepare(shards_config(byte_folder, "byte", byte_shards=True, bos_id=None))
  ev = evaluate.evaluate_trials(byte_spec, cfg, eval_fn, None, "val", 40, lambda b: b)[0]
  assert "val_bpb_pg" not in ev


def fake_hub(tmp_path: Path, tok, train_shards: int = 2) -> Path:
  """A folder laid out as parameter-golf's dataset repo (under `datasets/`)."""
  repo = tmp_path / "repo" / "datasets"
  shard_dir = repo / "datasets" / "fineweb10B_sp400"
  shard_dir.mkdir(parents=True)
  write_pg_shard(shard_dir / "fineweb_val_000000.bin", pg_documents(tok, DOCS[:3]))
  for k in range(train_shards):
    write_pg_shard(shard_dir / f"fineweb_train_{k:06d}.bin", pg_documents(tok, DOCS[3:]))
  (repo / "tokenizers").mkdir()
  tok.save(repo / "tokenizers" / "fineweb_400_bpe.model")
  (repo / "manifest.json").write_text(json.dumps({
      "datasets": [{"name": "fineweb10B_sp400", "tokenizer_name": "sp_bpe_400",
                    "stats": {"files_val": 1, "files_train": train_shards}}],
      "tokenizers": [{"name": "sp_bpe_400", "model_path": "tokenizers/fineweb_400_bpe.model"}]}))
  return tmp_path / "repo"


def test_fetch_parameter_golf_shards(tmp_path, model_path):
  tok = tokenizer_lib.load_tokenizer(str(model_path))
  repo = fake_hub(tmp_path, tok)
  fetched = []

  def download(path: str, local: Path) -> None:  # stands in for hf_hub_download
    fetched.append(path)
    local.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / path, local)

  out = tmp_path / "out"
  result = pgolf.fetch("sp400", out, train_shards=1, download=download)
  assert fetched == ["datasets/manifest.json",
                     "datasets/datasets/fineweb10B_sp400/fineweb_val_000000.bin",
                     "datasets/datasets/fineweb10B_sp400/fineweb_train_000000.bin",
                     "datasets/tokenizers/fineweb_400_bpe.model"]
  assert (out / "datasets" / "fineweb10B_sp400" / "fineweb_val_000000.bin").is_file()
  assert result["tokenizer"] == str(out / "tokenizers" / "fineweb_400_bpe.model")
  cfg = shards_config(out, result["tokenizer"], bos_id=result["bos_id"],
                      train_pattern=result["train_pattern"], val_pattern=result["val_pattern"])
  spec = data.prepare(cfg)
  assert len(spec.train_files) == 1 and data.bos_id(cfg, spec) == 1
  pgolf.fetch("sp400", out, train_shards=1, download=download)  # all there: nothing fetched
  assert len(fetched) == 4
  with pytest.raises(ConfigError, match="--train_shards=3: sp400 has 2 train shards"):
    pgolf.fetch("sp400", out, train_shards=3, download=download)
  with pytest.raises(ConfigError, match="no dataset fineweb10B_sp1024"):
    pgolf.fetch("sp1024", out, download=download)
  # A fetched shard with a bad header is one line naming it.
  bad = repo / "datasets" / "datasets" / "fineweb10B_sp400" / "fineweb_train_000001.bin"
  bad.write_bytes(bad.read_bytes()[:-2])
  with pytest.raises(shards.ShardError, match="fineweb_train_000001.bin: truncated"):
    pgolf.fetch("sp400", out, train_shards=2, download=download)


def test_prepare_command_trains_spm_on_the_train_split(tmp_path, capsys):
  corpus_file = tmp_path / "docs.jsonl"
  corpus_file.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS * 6))
  out = tmp_path / "prepared"
  code = prepare_corpus.main(["--input", str(corpus_file), "--tokenizer", "spm400", "--output",
                              str(out), "--val_fraction", "0.3", "--workers", "1"])
  assert code == 0, capsys.readouterr().err
  meta = json.loads((out / "meta.json").read_text())
  assert (meta["tokenizer"], meta["bos_id"], meta["bos_token"]) == ("spm", 1, "<s>")
  assert meta["lossy"] is not None  # nmt_nfkc drops the double spaces and the tab
  spec = data.prepare(config_dict.ConfigDict(dict(name="shards", prepared_dir=str(out),
                                                  seq_len=8)))
  assert spec.tokenizer.kind == "sentencepiece" and spec.bos_id == 1 and spec.lossy
  first = data.TokenStream(spec.val_files).read(0, 1)
  assert int(first[0]) == 1
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    prepare_corpus.main(["--input", str(corpus_file), "--tokenizer", "spm5", "--output",
                         str(tmp_path / "x")])
  assert e.value.code == 2
  assert "'spm<V>' with V in [261, 65536]" in capsys.readouterr().err


def test_shakespeare_spm1024(data_dir):  # noqa: F811 - the fixture
  spec = data.prepare(shakespeare_config(data_dir, "spm1024"))
  tok = spec.tokenizer
  assert (tok.kind, tok.vocab_size, spec.bos_id) == ("sentencepiece", 1024, None)
  assert spec.lossy and "decode(encode(text)) != text" in spec.lossy
  root = Path(data_dir) / "shakespeare"
  assert (shakespeare.tokenized_dir(root, "spm1024", 1024) / "tokenizer.model").is_file()
  val = shakespeare.read_split_text(root, "val")
  val_n = data.TokenStream(spec.val_files).read(0, spec.split_tokens["val"])
  np.testing.assert_array_equal(val_n, tok.encode(val))
  # The tokens stand for the normalized text: fewer bytes than the raw split's.
  assert tok.token_bytes[val_n].sum() == len(tok.decode(val_n).encode("utf-8"))
  assert tok.token_bytes[val_n].sum() < spec.split_bytes["val"]
  # With one BOS before each work: its id is 1.
  bos = data.prepare(shakespeare_config(data_dir, "spm1024", document_separator="bos"))
  assert bos.bos_id == 1 and bos.tokenizer.bos_id == 1
  assert int(data.TokenStream(bos.val_files).read(0, 1)[0]) == 1
  with pytest.raises(ConfigError, match="'spm<V>' with V in"):
    data.prepare(shakespeare_config(data_dir, "spm12"))


def test_a_run_on_spm1024_reports_both_byte_counts(data_dir, tmp_path):  # noqa: F811
  import os
  import subprocess
  import sys

  from tests.conftest import ROOT
  args = ["--config", "configs/gpt.py:test", "--config.data.tokenizer=spm1024",
          f"--config.data.data_dir={data_dir}", "--config.train.steps=2",
          "--config.train.eval_every=2", "--workdir", str(tmp_path / "run")]
  proc = subprocess.run([sys.executable, "-m", "jaxgpt.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  # parameter-golf's count and the tokens' own agree here (docs/data.md); val_bpb divides by
  # the raw bytes, 1.05% more than the normalized text's (the tokenizer drops whitespace).
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  ev = [r for r in rows if "val_bpb_tokens" in r][-1]
  assert ev["val_bpb_pg"] == pytest.approx(ev["val_bpb_tokens"], rel=1e-6)
  assert ev["val_bpb"] == pytest.approx(ev["val_bpb_tokens"] * 486_937 / 492_031, rel=1e-3)
  assert summary["tokenizer_lossy"].startswith("decode(encode(text)) != text")
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert "val_bpb_pg" in rows[-1] and "final_val_loss" in rows[-1]
