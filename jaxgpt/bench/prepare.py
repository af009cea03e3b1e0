"""Corpus preparation at full speed (scripts/bench_prepare.py): `python -m jaxgpt.data.prepare`
against the tokenizer's own batch encoding of the same text in one thread.

The corpus: the embedded Shakespeare's train works, cut into documents of varied length (each
work into pieces of 200 B to 20 KB at line breaks, lengths drawn from a seeded log-uniform law,
so document boundaries differ from copy to copy) and repeated until it holds `--megabytes` of
UTF-8 text, written as one parquet file in row groups of 2,000 documents (a `text` column).
The tokenizer: a byte-level BPE of `--vocab` ids trained on the first 20 MB (not timed), saved
as a tokenizer.json.

Measured, each once the corpus and the tokenizer exist (nothing else should run):
  ceiling     the `tokenizers` library's own `encode_batch` over every document, in one thread
              (RAYON_NUM_THREADS=1, a fresh process): the most one worker can do
  workers=N   the preparation command end to end (parquet read, tokenization in N worker
              processes, shards, meta.json), for each N of `--workers`
Reported per row: seconds, MB/s (UTF-8 bytes of the documents), tokens/s, and the ratios the
preparation is judged by: one worker against the ceiling (goal >= 0.8), N workers against one
(goal >= 0.85 N, i.e. 1.7 at 2).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxgpt.bench import output

TRAIN_TOKENIZER_BYTES = 20 << 20
ROW_GROUP = 2000


def cut(text: str, rng: random.Random, lo: int = 200, hi: int = 20_000) -> list[str]:
  """`text` cut at line breaks into pieces of about log-uniform(lo, hi) bytes."""
  out, start = [], 0
  while start < len(text):
    want = int(lo * (hi / lo) ** rng.random())
    end = text.find("\n", start + want)
    end = len(text) if end < 0 else end + 1
    out.append(text[start:end])
    start = end
  return out


def make_corpus(path: Path, megabytes: float, seed: int = 0) -> dict:
  """Writes the parquet corpus; returns {documents, bytes}."""
  import pyarrow as pa  # the corpora extra; only this benchmark needs it here
  import pyarrow.parquet as pq

  from jaxgpt.data import scenes  # the works of the train split, fetched on first use
  works = [text for _, text in scenes.scene_documents()["train"]]
  text = "".join(works)
  rng, target = random.Random(seed), int(megabytes * 1e6)
  docs, total = [], 0
  with pq.ParquetWriter(str(path), pa.schema([("text", pa.string())])) as writer:
    while total < target:
      for d in cut(text, rng):
        docs.append(d)
        total += len(d.encode("utf-8"))
        if len(docs) == ROW_GROUP:
          writer.write_table(pa.table({"text": docs}))
          docs = []
        if total >= target:
          break
    if docs:
      writer.write_table(pa.table({"text": docs}))
  meta = pq.ParquetFile(str(path)).metadata
  return {"documents": meta.num_rows, "bytes": total}


def train_tokenizer(corpus: Path, vocab: int, out: Path) -> None:
  """A byte-level BPE of `vocab` ids on the corpus's first TRAIN_TOKENIZER_BYTES."""
  import pyarrow.parquet as pq  # the corpora extra
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  texts, seen = [], 0
  for batch in pq.ParquetFile(str(corpus)).iter_batches(columns=["text"]):
    for t in batch.column(0).to_pylist():
      texts.append(t)
      seen += len(t)
    if seen >= TRAIN_TOKENIZER_BYTES:
      break
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(texts, trainers.BpeTrainer(
      vocab_size=vocab, special_tokens=["<|endoftext|>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.save(str(out))


CEILING = """
import json, sys, time
import pyarrow.parquet as pq
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[2])
texts = pq.read_table(sys.argv[1], columns=["text"]).column(0).to_pylist()
t0 = time.perf_counter()
tokens = 0
for i in range(0, len(texts), 2000):
  tokens += sum(len(e.ids) for e in tok.encode_batch(texts[i:i + 2000]))
print(json.dumps({"seconds": time.perf_counter() - t0, "tokens": tokens}))
"""


def ceiling(corpus: Path, tokenizer: Path) -> dict:
  """The library's own batch encoding in one thread, in a fresh process (the thread count is
  read when `tokenizers` loads)."""
  env = dict(os.environ, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
  proc = subprocess.run([sys.executable, "-c", CEILING, str(corpus), str(tokenizer)],
                        capture_output=True, text=True, env=env, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(corpus: Path, tokenizer: Path, out: Path, workers: int) -> dict:
  """The preparation command, timed end to end in a fresh process."""
  cmd = [sys.executable, "-m", "jaxgpt.data.prepare", "--input", str(corpus), "--output",
         str(out), "--tokenizer", str(tokenizer), "--workers", str(workers),
         "--val_fraction", "0.01"]
  t0 = time.perf_counter()
  subprocess.run(cmd, capture_output=True, text=True, check=True)
  seconds = time.perf_counter() - t0
  meta = json.loads((out / "meta.json").read_text())
  tokens = sum(s["tokens"] - s["documents"] for s in meta["splits"].values())
  return {"seconds": seconds, "tokens": tokens, "bos_tokens":
          sum(s["documents"] for s in meta["splits"].values())}


def run(megabytes: float, vocab: int, workers: list[int], out: str | None,
        workdir: str | None = None, smoke: bool = False) -> dict:
  """The benchmark: corpus, tokenizer, ceiling, then the command per worker count."""
  with tempfile.TemporaryDirectory(dir=workdir) as tmp:
    tmp = Path(tmp)
    corpus, tok = tmp / "corpus.parquet", tmp / "tokenizer.json"
    info = make_corpus(corpus, megabytes)
    train_tokenizer(corpus, vocab, tok)
    mb = info["bytes"] / 1e6
    rows = []

    def add(case, r, workers=None):
      rows.append({"case": case, "workers": workers, "seconds": r["seconds"],
                   "mb_per_s": mb / r["seconds"], "tokens_per_s": r["tokens"] / r["seconds"],
                   "tokens": r["tokens"]})
      print(table.line(rows[-1]), flush=True)
    table = output.Table(
        output.Column("case", "case", width=12, left=True),
        output.Column("seconds", "seconds", ".2f", 9), output.Column("MB/s", "mb_per_s", ".2f", 8),
        output.Column("tokens/s", "tokens_per_s", ",.0f", 12),
        output.Column("vs ceiling", lambda r: r.get("vs_ceiling"), ".2f", 11),
        output.Column("vs 1 worker", lambda r: r.get("vs_one"), ".2f", 12))
    print(f"corpus: {info['documents']:,} documents, {mb:.1f} MB; BPE vocab {vocab}")
    print(table.header(), flush=True)
    add("ceiling", ceiling(corpus, tok))
    for n in workers:
      add(f"workers={n}", prepare(corpus, tok, tmp / f"out{n}", n), n)
  base = rows[0]["mb_per_s"]
  one = next((r["mb_per_s"] for r in rows if r["workers"] == 1), None)
  for r in rows[1:]:
    r["vs_ceiling"] = r["mb_per_s"] / base
    r["vs_one"] = r["mb_per_s"] / one if one else None
  result = {"benchmark": "prepare", "smoke": smoke, "machine": output.machine(),
            "megabytes": mb, "documents": info["documents"], "vocab": vocab, "rows": rows}
  output.emit(result, out, table, rows, title="\nwith the ratios:")
  return result
