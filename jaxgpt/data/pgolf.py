"""parameter-golf's published FineWeb shards: fetched from its Hugging Face dataset repo.

    python -m jaxgpt.data.prepare --fetch_pg sp1024 --output data/pg --train_shards 8
    python -m jaxgpt.main --config configs/param_golf.py --config.data.name=shards \\
        --config.data.train_pattern='data/pg/datasets/fineweb10B_sp1024/fineweb_train_*.bin' \\
        --config.data.val_pattern='data/pg/datasets/fineweb10B_sp1024/fineweb_val_*.bin' \\
        --config.data.tokenizer=data/pg/tokenizers/fineweb_1024_bpe.model --config.data.bos_id=1

What parameter-golf publishes (its `data/cached_challenge_fineweb.py`): the dataset repo
`willdepueoai/parameter-golf` holds, under the folder `datasets/`, a `manifest.json`, the
shards `datasets/fineweb10B_<variant>/fineweb_{val,train}_NNNNNN.bin` and the tokenizer files
`tokenizers/...`. The manifest's entry for the dataset gives the number of val and train
shards (`stats.files_val`, `stats.files_train`) and the tokenizer's name, whose entry names
its files (`model_path`, `vocab_path` or `path`). Variants: `sp<V>` (a SentencePiece BPE of
V ids; `sp1024` is the baseline's) and `byte260`. All val shards are fetched (the first 50,000
documents) and the first `--train_shards` train shards (parameter-golf's default 80: 8B
tokens, 100M tokens per shard).

The files land under `--output` as parameter-golf lays them out locally (the repo's paths
without the leading `datasets/`: `manifest.json`, `datasets/fineweb10B_sp1024/...`,
`tokenizers/...`), fetched by `huggingface_hub.hf_hub_download` into its cache and then
hard-linked or copied; a file already there is not fetched again. Every shard's header is
checked (magic 20240520, version 1, token count against the file size): a bad one is one
error line naming it.

Shard layout (what `data.bos_id=1` declares): every document is `[1] + encode(text)` (BOS id 1,
no EOS), packed back to back; the tokens are little-endian uint16 after a header of 256
little-endian int32 (`shards.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from jaxgpt.data import shards
from jaxgpt.errors import ConfigError

REPO_ID = "willdepueoai/parameter-golf"  # a Hugging Face dataset repo
REMOTE_ROOT = "datasets"  # the folder of the repo that holds the export
VARIANT = re.compile(r"sp\d+|byte260")
DEFAULT_TRAIN_SHARDS = 80  # parameter-golf's default: 8B training tokens
BOS_ID = 1

Download = Callable[[str, Path], None]  # (repo path, local file): make the local file


def dataset_dir(variant: str) -> str:
  """The repo folder of a variant: "sp1024" -> "fineweb10B_sp1024"."""
  if not VARIANT.fullmatch(variant):
    raise ConfigError(f"--fetch_pg={variant!r}: a parameter-golf variant is sp<V> (e.g. sp1024) "
                      "or byte260")
  return f"fineweb10B_{variant}"


def hub_download(repo_id: str) -> Download:
  """A `Download` through `huggingface_hub.hf_hub_download` (its cache), then a hard link or
  a copy at the local path (written under a temporary name, then renamed)."""
  try:
    import huggingface_hub
  except ImportError:
    raise ConfigError("--fetch_pg needs huggingface_hub: pip install 'jaxgpt[corpora]'") from None

  def download(path: str, local: Path) -> None:
    try:
      got = Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=path,
                                                 repo_type="dataset")).resolve(strict=True)
    except Exception as e:  # noqa: BLE001 - network, auth, missing file: one line for any
      first = (str(e).strip().splitlines() or [""])[0]
      raise ConfigError(f"--fetch_pg: cannot fetch {path} from the dataset repo {repo_id}: "
                        f"{type(e).__name__}: {first}") from None
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.part")
    tmp.unlink(missing_ok=True)
    try:
      os.link(got, tmp)
    except OSError:
      shutil.copy2(got, tmp)
    tmp.replace(local)
  return download


def local_path(output: Path, path: str, root: str) -> Path:
  """Where the repo file `path` lands: under `output`, without the leading `root/`."""
  inner = path[len(root) + 1:] if root and path.startswith(f"{root}/") else path
  return output / inner


def plan(manifest: dict, variant: str, train_shards: int, root: str = REMOTE_ROOT
         ) -> dict[str, list[str]]:
  """The repo paths to fetch: {"val": shards, "train": shards, "tokenizer": files}."""
  name = dataset_dir(variant)
  entry = next((d for d in manifest.get("datasets", []) if d.get("name") == name), None)
  if entry is None:
    have = ", ".join(str(d.get("name")) for d in manifest.get("datasets", [])) or "none"
    raise ConfigError(f"--fetch_pg={variant!r}: the manifest has no dataset {name} (it has: "
                      f"{have})")
  stats = entry.get("stats") or {}
  num_val, num_train = int(stats.get("files_val", 0)), int(stats.get("files_train", 0))
  if not 0 <= train_shards <= num_train:
    raise ConfigError(f"--train_shards={train_shards}: {variant} has {num_train} train shards")
  tok_name = entry.get("tokenizer_name")
  tok = next((t for t in manifest.get("tokenizers", []) if t.get("name") == tok_name), None)
  artifacts = [str(tok[k]) for k in ("model_path", "vocab_path", "path") if tok and tok.get(k)]
  if not artifacts:
    raise ConfigError(f"--fetch_pg={variant!r}: the manifest names no files for its tokenizer "
                      f"{tok_name!r}")
  prefix = f"{root}/datasets/{name}" if root else f"datasets/{name}"
  at = (lambda p: f"{root}/{p}") if root else (lambda p: p)
  return {"val": [f"{prefix}/fineweb_val_{i:06d}.bin" for i in range(num_val)],
          "train": [f"{prefix}/fineweb_train_{i:06d}.bin" for i in range(train_shards)],
          "tokenizer": [at(p) for p in artifacts]}


def fetch(variant: str, output: str | os.PathLike, train_shards: int = DEFAULT_TRAIN_SHARDS,
          repo_id: str = REPO_ID, root: str = REMOTE_ROOT,
          download: Download | None = None) -> dict:
  """Fetches a variant's manifest, val shards, first `train_shards` train shards and
  tokenizer files into `output`, checks every shard's header; returns what a run needs:
  {"train_pattern", "val_pattern", "tokenizer", "bos_id", "tokens"}."""
  output = Path(output).expanduser()
  download = download or hub_download(repo_id)

  def get(path: str) -> Path:
    local = local_path(output, path, root)
    if not local.is_file():
      download(path, local)
    return local

  manifest_path = get(f"{root}/manifest.json" if root else "manifest.json")
  try:
    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
  except (OSError, ValueError) as e:
    raise ConfigError(f"{manifest_path}: not a readable manifest ({e})") from None
  paths = plan(manifest, variant, train_shards, root)
  local = {k: [get(p) for p in v] for k, v in paths.items()}
  tokens = {k: sum(shards.read_num_tokens(p) for p in local[k]) for k in ("val", "train")}
  model = next((p for p in local["tokenizer"] if p.suffix in (".model", ".json")), None)
  folder = (local["val"] or local["train"])[0].parent if local["val"] or local["train"] else None
  return {"train_pattern": str(folder / "fineweb_train_*.bin") if folder else None,
          "val_pattern": str(folder / "fineweb_val_*.bin") if folder else None,
          "tokenizer": str(model) if model else None, "bos_id": BOS_ID, "tokens": tokens,
          "files": {k: len(v) for k, v in local.items()}}


def summary(result: dict) -> str:
  """What was fetched, and the flags that train on it."""
  return "\n".join([
      f"val {result['files']['val']} shards ({result['tokens']['val']:,} tokens), train "
      f"{result['files']['train']} shards ({result['tokens']['train']:,} tokens)",
      "train with --config.data.name=shards "
      f"--config.data.train_pattern='{result['train_pattern']}' "
      f"--config.data.val_pattern='{result['val_pattern']}' "
      f"--config.data.tokenizer={result['tokenizer']} --config.data.bos_id={result['bos_id']}"])
