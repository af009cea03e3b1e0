"""A TensorFlow Datasets text dataset (`data.name = "tfds"`), read without TensorFlow.

    pip install 'jaxgpt[tfds]'     # tensorflow-datasets only; TensorFlow is never needed
    --config.data.name=tfds --config.data.tfds_name=lm1b --config.data.tfds_val_split=test

Records come from `tfds.data_source(name, split=..., data_dir=data.tfds_data_dir,
download=False)`, a random-access view of a dataset prepared in the ArrayRecord format, read
in order through a Grain `MapDataset`. The text of each record is its `data.tfds_text_key`
feature (default "text"; bytes are decoded as UTF-8, str taken as is), one document per
record (`documents.document_text`, or the boundary token and the text with
`data.document_separator="bos"`, see `documents.py`); the documents are tokenized with
`data.tokenizer` (`byte`, `bpe`: a byte-level BPE trained on the train split only, or a
tokenizer.json), concatenated and cached as token shards, from which `pipeline.py` cuts the
training windows (their order a function of (seed, step)) and the evaluation windows, as for
every source.

Splits: `data.tfds_train_split` (default "train") and `data.tfds_val_split` (default
"validation" if the dataset has one, else "test"); any TFDS split string works, e.g.
`train[:95%]` / `train[95%:]` for a dataset without a validation split.

Preparing a dataset (download_and_prepare) needs TensorFlow for most builders, and never
happens here (download=False): prepare it once, where TensorFlow is installed, with
`tfds build NAME --file_format=array_record [--data_dir DIR]`, and copy the folder if needed.
A missing (or TFRecord-only) dataset is a one-line error naming that command.

Cache: `<data_dir>/tfds/<name>-<key>/` (`data.data_dir`, else $JAXGPT_DATA_DIR, else
~/.cache/jaxgpt), key = hash of the dataset's full name (name/version), the split strings and
their record counts, the text key and the tokenizer setting. A dataset rebuilt in place under
the same version and counts reuses the old cache: delete the folder to rebuild.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterator

import numpy as np

from jaxgpt import registry
from jaxgpt.data import cache, documents
from jaxgpt.data.spec import DataSpec, get
from jaxgpt.data.text import check_tokenizer
from jaxgpt.errors import ConfigError

DEFAULT_TRAIN_SPLIT = "train"
VAL_SPLITS = ("validation", "test")  # the first the dataset has is the default val split
DEFAULT_TEXT_KEY = "text"
READ_THREADS = 4


def _tfds():
  """tensorflow_datasets, imported on first use: an optional extra, and it costs start-up."""
  try:
    import tensorflow_datasets
  except ImportError:
    raise ConfigError("data.name='tfds' needs tensorflow-datasets: pip install "
                      "'jaxgpt[tfds]' (TensorFlow itself is not needed)") from None
  return tensorflow_datasets


def _grain():
  """Grain, imported on first use (it imports jax and orbax)."""
  import grain
  return grain


def check_data(cfg: Any) -> None:
  check_tokenizer(get(cfg, "tokenizer", "byte"))
  documents.check_boundary(cfg)
  name = get(cfg, "tfds_name")
  if not (isinstance(name, str) and name):
    raise ConfigError(f"data.tfds_name={name!r} must be set (a TFDS dataset, e.g. 'lm1b') "
                      "when data.name='tfds'")
  for key in ("tfds_train_split", "tfds_val_split", "tfds_text_key", "tfds_data_dir"):
    value = get(cfg, key)
    if value is not None and not (isinstance(value, str) and value):
      raise ConfigError(f"data.{key}={value!r} must be a non-empty string or unset")


def build_command(name: str, tfds_dir: str | None) -> str:
  return (f"tfds build {name.split(':')[0]} --file_format=array_record"
          + (f" --data_dir={tfds_dir}" if tfds_dir else ""))


def _one_line(e: BaseException) -> str:
  return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def val_split(tfds, name: str, tfds_dir: str | None) -> str:
  """The default validation split: the first of VAL_SPLITS that the dataset has."""
  try:
    have = list(tfds.builder(name, data_dir=tfds_dir).info.splits.keys())
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ConfigError(f"data.tfds_name={name!r}: {_one_line(e)}") from None
  for split in VAL_SPLITS:
    if split in have:
      return split
  raise ConfigError(f"data.tfds_val_split=None: {name} has no split {' or '.join(VAL_SPLITS)} "
                    f"(its splits: {have or 'unknown'}); set one, e.g. 'train[95%:]' with "
                    "data.tfds_train_split='train[:95%]'")


def open_split(tfds, name: str, split: str, key: str, tfds_dir: str | None):
  """The random-access records of one split; every failure is one line naming a key."""
  try:
    return tfds.data_source(name, split=split, data_dir=tfds_dir, download=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ConfigError(f"data.tfds_name={name!r}: {_one_line(e)}") from None
  except (NotImplementedError, FileNotFoundError, AssertionError):
    # TFDS says "FileFormat.TFRECORD is not supported" both when nothing is prepared and when
    # only a TFRecord copy is.
    where = tfds_dir or "TFDS's default data_dir"
    raise ConfigError(
        f"data.tfds_name={name!r}: no ArrayRecord copy in {where} (not prepared, or prepared "
        f"as TFRecord); prepare it once where TensorFlow is installed: "
        f"{build_command(name, tfds_dir)}") from None
  except ValueError as e:  # an unknown split or a bad slice
    raise ConfigError(f"data.{key}={split!r}: {_one_line(e)}") from None


def record_text(record: Any, text_key: str, where: str) -> str:
  """The text of one record: its `text_key` feature, bytes decoded as UTF-8."""
  if not isinstance(record, dict) or text_key not in record:
    keys = sorted(record) if isinstance(record, dict) else type(record).__name__
    raise ConfigError(f"data.tfds_text_key={text_key!r} is not a feature of {where} "
                      f"(its features: {keys})")
  value = record[text_key]
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if isinstance(value, (bytes, np.bytes_)):
    try:
      return bytes(value).decode("utf-8")
    except UnicodeDecodeError as e:
      raise ConfigError(f"data.tfds_text_key={text_key!r}: a record of {where} is not "
                        f"UTF-8 ({e})") from None
  if isinstance(value, str):
    return value
  raise ConfigError(f"data.tfds_text_key={text_key!r}: {where} holds {type(value).__name__}, "
                    "not text (bytes or str)")


def read_texts(source, text_key: str, where: str) -> Iterator[str]:
  """The records' texts in record order, read through Grain (threads, prefetch)."""
  grain = _grain()
  ds = grain.MapDataset.source(source).map(
      functools.partial(record_text, text_key=text_key, where=where))
  yield from ds.to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS,
                                                  prefetch_buffer_size=256))


def _full_name(tfds, name: str, tfds_dir: str | None) -> str:
  try:
    return tfds.builder(name, data_dir=tfds_dir).info.full_name
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ConfigError(f"data.tfds_name={name!r}: {_one_line(e)}") from None


def prepare_source(cfg: Any) -> DataSpec:
  """Tokenizes (or finds in the cache) the train and validation splits of the TFDS dataset."""
  tfds = _tfds()
  name, tfds_dir = get(cfg, "tfds_name"), get(cfg, "tfds_data_dir")
  text_key = get(cfg, "tfds_text_key", DEFAULT_TEXT_KEY)
  splits = {"train": get(cfg, "tfds_train_split", DEFAULT_TRAIN_SPLIT),
            "val": get(cfg, "tfds_val_split") or val_split(tfds, name, tfds_dir)}
  sources = {s: open_split(tfds, name, split, f"tfds_{s}_split", tfds_dir)
             for s, split in splits.items()}
  full_name = _full_name(tfds, name, tfds_dir)
  tok = get(cfg, "tokenizer", "byte")
  bpe_vocab_size = get(cfg, "bpe_vocab_size", 1024)
  separator, bos_token = get(cfg, "document_separator", "newline"), get(cfg, "bos_token")
  key = {"source": "tfds", "format": documents.FORMAT, "dataset": full_name,
         "splits": {s: [split, len(sources[s])] for s, split in splits.items()},
         "text_key": text_key, **documents.tokenizer_key(tok, bpe_vocab_size),
         **documents.separator_key(separator, bos_token)}
  folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", full_name)
  root = cache.data_dir(get(cfg, "data_dir")) / "tfds" / f"{folder}-{documents.key_hash(key)}"

  def docs(s: str):
    return lambda: read_texts(sources[s], text_key, f"{full_name} split {splits[s]!r}")

  return documents.prepare(root, {s: docs(s) for s in splits}, tokenizer=tok,
                           bpe_vocab_size=bpe_vocab_size, key=key, name="tfds",
                           separator=separator, bos_token=bos_token)


def check(config: Any) -> None:
  check_data(config.data)


registry.DATA_SOURCES.register("tfds", registry.DataSource(
    prepare=prepare_source, check_data=check_data, check=check))
