"""python -m jaxgpt.data.prepare: parquet, jsonl (plain, .gz, .zst), text files and a streamed
Hugging Face dataset -> shards with the boundary token before every document, a validation
split by document hash, meta.json; the same output for any worker count, resumable after a
SIGKILL, one-line errors that leave nothing looking finished, and a folder a run trains on.
The corpora are small files this module writes; the dataset is read offline through
`datasets.load_dataset("parquet", data_files=..., streaming=True)`.
"""

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import config as config_lib
from jaxgpt import data
from jaxgpt.data import prepare_corpus, tokenizer
from jaxgpt.errors import ConfigError
from tests.helpers import ROOT

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
zstandard = pytest.importorskip("zstandard")

WORDS = ("the quick brown fox jumps over a lazy dog; caf\u00e9 na\u00efve \u2014 \u65e5\u672c "
         "\U0001f642 <|endoftext|> tab\there\nnew line").split(" ")
BOS = 256


def make_docs(n: int, seed: int = 0) -> list[str]:
  """n documents of 0 to 40 words (some empty), with multi-byte UTF-8 and newlines."""
  rng = random.Random(seed)
  return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
  lines = "".join(json.dumps({"id": i, field: d}) + "\n" for i, d in enumerate(docs)).encode()
  if path.suffix == ".gz":
    lines = gzip.compress(lines)
  elif path.suffix == ".zst":
    lines = zstandard.ZstdCompressor().compress(lines)
  path.write_bytes(lines)
  return path


def write_parquet(path: Path, docs: list[str], field: str = "text") -> Path:
  pq.write_table(pa.table({"id": list(range(len(docs))), field: docs}), path,
                 row_group_size=7)
  return path


def prepare(capsys, *args: str) -> tuple[int, str, str]:
  """Runs the command in this process: (exit code, stdout, stderr)."""
  try:
    code = prepare_corpus.main([str(a) for a in args])
  except SystemExit as e:
    code = e.code
  out = capsys.readouterr()
  return code, out.out, out.err


def split_docs(out: Path) -> dict[str, list[str]]:
  """The documents of each split of a byte-tokenized folder (split at the boundary token)."""
  meta = json.loads((out / "meta.json").read_text())
  tok = tokenizer.ByteTokenizer(boundary=True)
  docs = {}
  for split, m in meta["splits"].items():
    tokens = np.concatenate([np.asarray(data.read_shard(out / f)) for f in m["files"]])
    starts = np.flatnonzero(tokens == BOS)
    assert tokens.size == 0 or starts[0] == 0
    docs[split] = [tok.decode(tokens[a + 1:b]) for a, b in zip(starts, [*starts[1:],
                                                                        len(tokens)])]
  return docs


def expected_split(docs: list[str], fraction: float, cap: int | None = None) -> dict:
  """train / val as the command must choose them: hash below `fraction`, the first `cap`."""
  out = {"train": [], "val": []}
  for d in docs:
    if d:
      val = prepare_corpus.doc_hash(d) < fraction and (cap is None or len(out["val"]) < cap)
      out["val" if val else "train"].append(d)
  return out


def folder_bytes(out: Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}


# ------------------------------------------------------------------------------------------
# Inputs, the split, meta.json.

def test_every_input_format_gives_the_documents(tmp_path, capsys):
  docs = make_docs(120)
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  write_jsonl(corpus / "a.jsonl", docs[:30])
  write_jsonl(corpus / "b.jsonl.gz", docs[30:50])
  write_jsonl(corpus / "c.jsonl.zst", docs[50:70])
  write_parquet(corpus / "d.parquet", docs[70:118])
  (corpus / "e.txt").write_text(docs[118] or "one text file", encoding="utf-8")
  docs[118] = docs[118] or "one text file"
  with gzip.open(corpus / "f.txt.gz", "wt", encoding="utf-8") as f:
    f.write(docs[119] or "x")
  docs[119] = docs[119] or "x"
  out = tmp_path / "out"
  code, stdout, err = prepare(capsys, "--input", corpus / "*", "--output", out,
                              "--val_fraction", 0.3, "--shard_tokens", 300, "--workers", 2)
  assert code == 0, err
  assert "train with --config.data.name=shards --config.data.prepared_dir=" in stdout
  assert "doc/s" in err and "tok/s" in err  # the progress bar
  want = expected_split(docs, 0.3)
  assert split_docs(out) == want and want["val"] and want["train"]
  meta = json.loads((out / "meta.json").read_text())
  assert (meta["bos_id"], meta["vocab_size"], meta["document_separator"]) == (BOS, 257, "bos")
  assert meta["records"] == 120 and meta["empty_documents"] == docs.count("")
  assert meta["lossy"] is None and meta["shard_version"] == 1
  for split, texts in want.items():
    m = meta["splits"][split]
    assert m["documents"] == len(texts)
    assert m["bytes"] == m["token_bytes"] == sum(len(t.encode()) for t in texts)
    assert m["tokens"] == m["bytes"] + len(texts)  # one boundary token each
    assert all(data.read_shard(out / f).size == 300 for f in m["files"][:-1])
  assert not list(out.glob(".*.part")) and not (out / "progress.json").exists()


def test_output_depends_on_the_corpus_not_the_workers(tmp_path, capsys):
  path = write_jsonl(tmp_path / "c.jsonl", make_docs(300, seed=1))
  runs = []
  for workers in (1, 2):
    out = tmp_path / f"w{workers}"
    code, _, err = prepare(capsys, "--input", path, "--output", out, "--val_fraction", 0.2,
                           "--shard_tokens", 1000, "--workers", workers)
    assert code == 0, err
    runs.append((folder_bytes(out), (out / "meta.json").read_text()))
  assert runs[0] == runs[1] and len(runs[0][0]) > 4


def test_val_docs_takes_the_first_candidates(tmp_path, capsys):
  docs = make_docs(80, seed=2)
  path = write_jsonl(tmp_path / "c.jsonl", docs)
  code, _, err = prepare(capsys, "--input", path, "--output", tmp_path / "out",
                         "--val_fraction", 0.5, "--val_docs", 3, "--workers", 1)
  assert code == 0, err
  got = split_docs(tmp_path / "out")
  assert got == expected_split(docs, 0.5, cap=3) and len(got["val"]) == 3


def test_hf_dataset_streams_like_the_files(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  pytest.importorskip("datasets")
  docs = make_docs(90, seed=3)
  folder = tmp_path / "pq"
  folder.mkdir()
  write_parquet(folder / "part-0.parquet", docs[:50])
  write_parquet(folder / "part-1.parquet", docs[50:])
  common = ["--val_fraction", 0.25, "--shard_tokens", 400, "--workers", 1]
  code, _, err = prepare(capsys, "--hf_dataset", "parquet", "--hf_data_files",
                         folder / "*.parquet", "--output", tmp_path / "hf", *common)
  assert code == 0, err
  code, _, err = prepare(capsys, "--input", folder / "*.parquet", "--output",
                         tmp_path / "files", *common)
  assert code == 0, err
  assert folder_bytes(tmp_path / "hf") == folder_bytes(tmp_path / "files")
  assert split_docs(tmp_path / "hf") == expected_split(docs, 0.25)
  code, _, err = prepare(capsys, "--hf_dataset", "parquet", "--hf_data_files",
                         folder / "*.parquet", "--output", tmp_path / "bad", "--text_field",
                         "body")
  assert code == 2 and err.strip().splitlines()[-1] == (
      "error: --hf_dataset='parquet': no column 'body' (--text_field; its columns: id, text)")


def test_bpe_and_tokenizer_json(tmp_path, capsys):
  docs = make_docs(150, seed=4)
  path = write_jsonl(tmp_path / "c.jsonl", docs)
  want = expected_split(docs, 0.2)
  code, _, err = prepare(capsys, "--input", path, "--output", tmp_path / "bpe", "--tokenizer",
                         "bpe", "--bpe_vocab_size", 300, "--val_fraction", 0.2, "--workers", 1)
  assert code == 0, err
  spec = data.prepare(config_dict.ConfigDict(dict(name="shards",
                                                  prepared_dir=str(tmp_path / "bpe"))))
  tok = spec.tokenizer
  assert tok.hf.id_to_token(spec.bos_id) == "<|endoftext|>" and spec.vocab_size <= 300
  assert spec.lossy is None and spec.token_bytes[spec.bos_id] == 0
  for split, texts in want.items():
    tokens = np.concatenate([np.asarray(data.read_shard(f)) for f in spec.files(split)])
    starts = np.flatnonzero(tokens == spec.bos_id)
    assert len(starts) == len(texts) and starts[0] == 0
    assert tok.decode(tokens[starts[-1] + 1:]) == texts[-1]
    assert int(spec.token_bytes[tokens].sum()) == spec.split_bytes[split]
  gpt2ish = tmp_path / "tok.json"
  tok.hf.save(str(gpt2ish))  # a tokenizer.json with <|endoftext|> among its special tokens
  code, _, err = prepare(capsys, "--input", path, "--output", tmp_path / "file", "--tokenizer",
                         gpt2ish, "--val_fraction", 0.2, "--workers", 1)
  assert code == 0, err
  assert folder_bytes(tmp_path / "file") == folder_bytes(tmp_path / "bpe")
  bare = tokenizer.train_bpe(" ".join(docs), 300)
  bare.save(tmp_path / "bare.json")
  code, _, err = prepare(capsys, "--input", path, "--output", tmp_path / "bare", "--tokenizer",
                         tmp_path / "bare.json")
  assert code == 2 and "has no document-boundary token" in err and err.count("\n") == 1
  assert not (tmp_path / "bare").exists()


# ------------------------------------------------------------------------------------------
# Resuming after a kill.

def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path, capsys):
  docs = make_docs(40_000, seed=5)
  path = write_jsonl(tmp_path / "c.jsonl", docs)
  args = ["--input", path, "--output", tmp_path / "out", "--val_fraction", 0.1,
          "--shard_tokens", 50_000, "--workers", 2]
  proc = subprocess.Popen([sys.executable, "-m", "jaxgpt.data.prepare", *map(str, args)],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  fourth, deadline = tmp_path / "out" / "train_000003.bin", time.monotonic() + 120
  try:  # kill it once a few shards are written: mid-shard, maybe mid-write, maybe uncommitted
    while time.monotonic() < deadline and proc.poll() is None and not fourth.exists():
      time.sleep(0.002)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers (its own group)
    proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  assert not (tmp_path / "out" / "meta.json").exists()
  assert (tmp_path / "out" / "progress.json").exists()
  code, _, err = prepare(capsys, *args)  # the same command again: it resumes
  assert code == 0, err
  want = expected_split(docs, 0.1)
  got = split_docs(tmp_path / "out")
  assert got == want  # every document once, in order
  assert sum(map(len, got.values())) == len([d for d in docs if d])
  code, _, err = prepare(capsys, *args[:3], tmp_path / "fresh", *args[4:])
  assert code == 0, err
  assert folder_bytes(tmp_path / "out") == folder_bytes(tmp_path / "fresh")
  meta, fresh = (json.loads((tmp_path / d / "meta.json").read_text()) for d in ("out", "fresh"))
  assert meta["splits"] == fresh["splits"]
  assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")) == [
      ".lock"]


# ------------------------------------------------------------------------------------------
# Errors: one line, exit code 2, nothing that looks finished.

def test_missing_parquet_column(tmp_path, capsys):
  path = write_parquet(tmp_path / "c.parquet", ["a", "b"], field="content")
  code, _, err = prepare(capsys, "--input", path, "--output", tmp_path / "out")
  assert code == 2 and err == (f"error: {path}: no column 'text' (--text_field; its columns: "
                               "id, content)\n")
  assert not (tmp_path / "out").exists()


def test_bad_jsonl_line_names_file_and_line_then_skip_bad_lines_goes_on(tmp_path, capsys):
  docs = make_docs(700, seed=6)
  path = write_jsonl(tmp_path / "c.jsonl", docs)
  lines = path.read_text().splitlines(keepends=True)
  lines[600] = "{not json\n"
  path.write_text("".join(lines))
  args = ["--input", path, "--output", tmp_path / "out", "--val_fraction", 0.2,
          "--shard_tokens", 500, "--workers", 1]
  code, _, err = prepare(capsys, *args)
  assert code == 2 and err.strip().splitlines()[-1] == (
      f"error: {path}:601: not JSON (Expecting property name enclosed in double quotes) "
      "(--skip_bad_lines goes on without it)")
  assert not (tmp_path / "out" / "meta.json").exists()
  code, _, err = prepare(capsys, *args, "--skip_bad_lines")  # resumes, no --restart needed
  assert code == 0, err
  meta = json.loads((tmp_path / "out" / "meta.json").read_text())
  assert meta["bad_lines"] == 1 and meta["bad_line_examples"] == [
      f"{path}:601: not JSON (Expecting property name enclosed in double quotes)"]
  assert split_docs(tmp_path / "out") == expected_split(docs[:600] + docs[601:], 0.2)


def test_empty_corpus_and_empty_split(tmp_path, capsys):
  path = write_jsonl(tmp_path / "empty.jsonl", ["", "", None])
  code, _, err = prepare(capsys, "--input", path, "--output", tmp_path / "out", "--workers", 1)
  assert code == 2 and err.strip().splitlines()[-1] == (
      f"error: --input='{path}': empty corpus: no documents in 3 records (3 empty, 0 bad; "
      "--text_field='text')")
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lock"]
  path = write_jsonl(tmp_path / "few.jsonl", ["one", "two", "three"])
  code, _, err = prepare(capsys, "--input", path, "--output", tmp_path / "few",
                         "--val_fraction", 1e-9, "--workers", 1)
  assert code == 2 and "no val documents among the 3 (raise --val_fraction)" in err
  assert not list((tmp_path / "few").glob("*.json")) and not list((tmp_path / "few").glob("*.bin"))


def test_vocabulary_that_does_not_fit_the_dtype(tmp_path, capsys):
  tok = tokenizer.train_bpe("the quick brown fox " * 20, 280)
  tok.hf.add_special_tokens(["<|endoftext|>"] + [f"<|pad{i}|>" for i in range(66_000)])
  tok.hf.save(str(tmp_path / "big.json"))
  path = write_jsonl(tmp_path / "c.jsonl", ["the fox", "the dog"])
  code, _, err = prepare(capsys, "--input", path, "--output", tmp_path / "out", "--tokenizer",
                         tmp_path / "big.json", "--dtype", "uint16")
  assert code == 2 and err == (
      f"error: --dtype=uint16: --tokenizer={tmp_path / 'big.json'} has "
      f"{tok.hf.get_vocab_size():,} ids, but uint16 "
      "shards hold ids below 65,536 (use --dtype uint32, or auto)\n")
  assert not (tmp_path / "out").exists()


def test_finished_folder_and_flag_errors(tmp_path, capsys):
  path = write_jsonl(tmp_path / "c.jsonl", make_docs(60, seed=7))
  args = ["--input", path, "--output", tmp_path / "out", "--val_fraction", 0.3, "--workers", 1]
  assert prepare(capsys, *args)[0] == 0
  before = folder_bytes(tmp_path / "out")
  code, stdout, _ = prepare(capsys, *args)  # finished: its summary, nothing rewritten
  assert code == 0 and "train with" in stdout and folder_bytes(tmp_path / "out") == before
  code, _, err = prepare(capsys, *args[:-4], "--val_fraction", 0.5, "--workers", 1)
  assert code == 2 and "holds a finished preparation of other inputs or settings " \
      "(val_fraction: 0.3 -> 0.5); choose another --output" in err
  for bad, message in (
      ([], "give --input GLOB (files) or --hf_dataset NAME, one of them"),
      (["--input", path, "--val_fraction", 0], "--val_fraction=0.0 must be a number > 0"),
      (["--input", tmp_path / "nothing*.jsonl"], "matches no files"),
      (["--input", path, "--bos_token", "<s>"], "--bos_token='<s>' names a special token")):
    code, _, err = prepare(capsys, *bad, "--output", tmp_path / "x")
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------
# Training on the folder: data.name=shards, data.prepared_dir.

def test_prepared_dir_config(tmp_path, capsys):
  c = config_lib.base_config()
  c.data.update(name="shards", prepared_dir=str(tmp_path / "none"))
  config_lib.validate(c)  # no model.vocab_size needed: the folder has a tokenizer
  with pytest.raises(ConfigError, match=r"data.prepared_dir='.*none': no meta.json"):
    data.prepare(c.data)
  c.data.train_pattern = "t*.bin"
  with pytest.raises(ConfigError, match=r"data.prepared_dir=.* and data.train_pattern='t\*.bin'"):
    config_lib.validate(c)


def test_a_run_trains_on_the_folder_with_document_masking(tmp_path, capsys):
  path = write_jsonl(tmp_path / "c.jsonl", make_docs(400, seed=8))
  out = tmp_path / "out"
  code, _, err = prepare(capsys, "--input", path, "--output", out, "--val_fraction", 0.2,
                         "--workers", 1)
  assert code == 0, err
  meta = json.loads((out / "meta.json").read_text())
  args = ["--config", "configs/gpt.py:test", "--config.data.name=shards",
          f"--config.data.prepared_dir={out}", "--config.data.bos_id=256",
          "--config.model.document_mask=true", "--config.train.steps=2",
          "--config.train.eval_every=2", "--workdir", str(tmp_path / "run")]
  proc = subprocess.run([sys.executable, "-m", "jaxgpt.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(tmp_path / "run" / "summary.json"))
  assert summary["val_bpb"] is not None and summary["tokenizer_lossy"] is None
  assert summary["final_val_tokens"] == meta["splits"]["val"]["tokens"] - 1
