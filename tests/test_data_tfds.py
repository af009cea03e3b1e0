"""data.name='tfds': TFDS text datasets read without TensorFlow (tfds.data_source + Grain).

No network: records come from `tfds.testing.mock_data` (known texts through
`as_data_source_fn`, or TFDS's random texts), or from a tiny dataset this module prepares in
the ArrayRecord format itself (TF-free). TensorFlow must never be imported.
"""

import os
import sys

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import config as config_lib
from jaxgpt import data
from jaxgpt.data import tokenizer
from jaxgpt.errors import ConfigError
from tests.conftest_data import split_tokens

tfds = pytest.importorskip("tensorflow_datasets")

# Mixed bytes and str, as real data (bytes) and TFDS's mock (str) give them; multi-byte UTF-8.
DOCS = {
    "train": [b"First Citizen:\nBefore we proceed any further, hear me speak.",
              "All:\nSpeak, speak.\n", "", "Caf\u00e9 \u2014 r\u00e9sum\u00e9, na\u00efve.",
              b"You are all resolved rather to die than to famish?"],
    "test": ["Resolved. resolved.", b"First, you know Caius Marcius is chief enemy."],
}


def known_source(builder, split, **kwargs):
  """as_data_source_fn: the records of DOCS[split] (a list is a random-access source)."""
  del builder, kwargs
  return [{"text": t} for t in DOCS[split]]


def reference_stream(docs) -> np.ndarray:
  """The bytes the split must hold: each non-empty document, plus "\\n" if it has none."""
  out = b""
  for d in docs:
    d = d if isinstance(d, bytes) else d.encode("utf-8")
    if d:
      out += d if d.endswith(b"\n") else d + b"\n"
  return np.frombuffer(out, np.uint8).astype(np.int64)


def tfds_config(tmp_path, **overrides):
  cfg = dict(name="tfds", tokenizer="byte", bpe_vocab_size=300, seq_len=8, tfds_name="lm1b",
             tfds_train_split=None, tfds_val_split="test", tfds_text_key=None,
             tfds_data_dir=None, data_dir=str(tmp_path / "cache"))
  return config_dict.ConfigDict({**cfg, **overrides})


@pytest.fixture(autouse=True)
def no_tensorflow():
  yield
  assert "tensorflow" not in sys.modules, "TensorFlow was imported"


def test_known_texts_make_exact_windows(tmp_path):
  with tfds.testing.mock_data(as_data_source_fn=known_source):
    spec = data.prepare(tfds_config(tmp_path))
  for split, name in (("train", "train"), ("val", "test")):
    want = reference_stream(DOCS[name])
    np.testing.assert_array_equal(split_tokens(spec, split), want)
    assert spec.split_bytes[split] == len(want)
  stream = reference_stream(DOCS["train"])
  it = data.train_iterator(spec, seq_len=8, global_batch_size=4, seed=3)
  batches = [next(it) for _ in range(30)]  # several epochs of the 21 windows
  for b in batches:
    for x, y in zip(b["inputs"], b["targets"]):
      np.testing.assert_array_equal(x[1:], y[:-1])
      window = np.concatenate([x, y[-1:]])
      hits = [s for s in range(len(stream) - 8) if np.array_equal(stream[s:s + 9], window)]
      assert hits, "a training window is not a contiguous run of the documents"
  # Resume: a fresh iterator at step 17 gives exactly the batches of an unbroken one.
  resumed = data.train_iterator(spec, seq_len=8, global_batch_size=4, seed=3, start_step=17)
  for b in batches[17:]:
    np.testing.assert_array_equal(next(resumed)["inputs"], b["inputs"])
  it.close(), resumed.close()
  val = next(data.eval_batches(spec, "val", seq_len=8, batch_size=2))
  np.testing.assert_array_equal(val["inputs"].reshape(-1), reference_stream(DOCS["test"])[:16])


def test_mock_records_are_deterministic_and_bpe_is_train_only(tmp_path):
  cfg = tfds_config(tmp_path, tokenizer="bpe", tfds_name="tiny_shakespeare",
                    tfds_val_split="validation", seq_len=4)
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    spec = data.prepare(cfg)
    records = tfds.data_source("tiny_shakespeare", split="train", download=False)
    train_docs = [records[i]["text"] for i in range(len(records))]
    again = data.prepare(tfds_config(tmp_path / "other", tokenizer="bpe", seq_len=4,
                                     tfds_name="tiny_shakespeare", tfds_val_split="validation"))
  for split in ("train", "val"):
    np.testing.assert_array_equal(split_tokens(spec, split), split_tokens(again, split))
    assert int(spec.token_bytes[split_tokens(spec, split)].sum()) == spec.split_bytes[split]
  reference = tokenizer.train_bpe([d if d.endswith("\n") else d + "\n" for d in train_docs], 300)
  assert spec.tokenizer.hf.get_vocab() == reference.hf.get_vocab()
  assert spec.tokenizer.decode(split_tokens(spec, "train")) == "".join(
      d + "\n" for d in train_docs)


class TinyText(tfds.core.GeneratorBasedBuilder):
  """A two-split text dataset, prepared here as ArrayRecord without TensorFlow."""
  # A one-part module name: TFDS then looks for no checksums file beside the code (for the
  # module `tests.test_data_tfds` it would need the `importlib_resources` backport).
  __module__ = "tiny_text_builder"
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
        {"text": tfds.features.Text(), "id": np.int64}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(DOCS["train"]),
            "validation": self._generate_examples(DOCS["test"])}

  def _generate_examples(self, docs):
    for i, d in enumerate(docs):
      yield i, {"text": d if isinstance(d, str) else d.decode("utf-8"), "id": i}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("tfds"))
  TinyText(data_dir=root, file_format="array_record").download_and_prepare()
  return root


def test_a_prepared_array_record_dataset(tmp_path, tiny_dir):
  cfg = tfds_config(tmp_path, tfds_name="tiny_text", tfds_data_dir=tiny_dir, tfds_val_split=None)
  spec = data.prepare(cfg)  # the default val split: "validation"
  # TFDS returns these records as bytes; the order of a split is TFDS's (it shuffles on write).
  records = tfds.data_source("tiny_text", split="train", data_dir=tiny_dir, download=False)
  assert isinstance(records[0]["text"], bytes)
  np.testing.assert_array_equal(split_tokens(spec, "train"),
                                reference_stream([records[i]["text"] for i in
                                                  range(len(records))]))
  assert sorted(r["text"] for r in records) == sorted(
      d if isinstance(d, bytes) else d.encode() for d in DOCS["train"])
  np.testing.assert_array_equal(np.sort(split_tokens(spec, "val")),
                                np.sort(reference_stream(DOCS["test"])))
  # A split given as a slice; an unknown split and an unknown feature name their keys.
  half = data.prepare(tfds_config(tmp_path, tfds_name="tiny_text", tfds_data_dir=tiny_dir,
                                  tfds_train_split="train[:2]", tfds_val_split="train[2:]"))
  assert half.split_tokens["train"] + half.split_tokens["val"] == spec.split_tokens["train"]
  with pytest.raises(ConfigError, match="data.tfds_val_split='nope'"):
    data.prepare(tfds_config(tmp_path, tfds_name="tiny_text", tfds_data_dir=tiny_dir,
                             tfds_val_split="nope"))
  with pytest.raises(ConfigError, match=r"data.tfds_text_key='body' .*\['id', 'text'\]"):
    data.prepare(tfds_config(tmp_path, tfds_name="tiny_text", tfds_data_dir=tiny_dir,
                             tfds_val_split=None, tfds_text_key="body"))


def test_missing_dataset_is_one_line_naming_the_build_command(tmp_path):
  empty = str(tmp_path / "empty_tfds")
  with pytest.raises(ConfigError) as e:
    data.prepare(tfds_config(tmp_path, tfds_data_dir=empty))
  msg = str(e.value)
  assert "\n" not in msg and "data.tfds_name='lm1b'" in msg
  assert f"tfds build lm1b --file_format=array_record --data_dir={empty}" in msg
  with pytest.raises(ConfigError, match="data.tfds_name='no_such_dataset'"):
    data.prepare(tfds_config(tmp_path, tfds_name="no_such_dataset", tfds_data_dir=empty))
  assert not os.path.exists(tmp_path / "cache" / "tfds")  # nothing half-made


def test_tfds_config_checks_and_missing_package(tmp_path, monkeypatch):
  c = config_lib.base_config()
  c.data.name = "tfds"
  with pytest.raises(ConfigError, match="data.tfds_name=None must be set"):
    config_lib.validate(c)
  c.data.tfds_name = "lm1b"
  config_lib.validate(c)
  c.data.tfds_text_key = ""
  with pytest.raises(ConfigError, match="data.tfds_text_key=''"):
    config_lib.validate(c)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
  with pytest.raises(ConfigError, match=r"pip install 'jaxgpt\[tfds\]'"):
    data.prepare(tfds_config(tmp_path))
