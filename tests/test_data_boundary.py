"""The document-boundary token (data.document_separator="bos"): every tokenizer kind has one,
it stands for no bytes, it starts every document of the embedded corpus, `text` and `tfds`,
and `spec.bos_id` hands it on; "newline" (the default) leaves every shard and cache as it was.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ml_collections import config_dict

from jaxgpt import config as config_lib
from jaxgpt import data
from jaxgpt.data import documents, shakespeare, tokenizer
from jaxgpt.errors import ConfigError
from tests.conftest_data import byte_spec, data_dir, split_tokens  # noqa: F401

# Digests of the default caches as the code before the boundary token wrote them (shards,
# tokenizer.json, meta.json): the quick start and the committed studies read these bytes.
SHAKESPEARE_DIGESTS = {
    "byte": "8f2daa0d5ebe6fb768c9af06e2f0b3dd7c6e3d62872f103f7bd9af90638aa58a",
    "bpe": "3777f7a5004220fa379fad57000de43566e7a2b30d0d9966bab85bc46c039104",
}
TEXT_CACHES = {  # tokenizer -> (cache folder, digest without the key's temporary paths)
    "byte": ("83bef5170ab1a506",
             "200f0c826549343a1eda91b9597a1e743eaca9fe61875584293aaa55adda5824"),
    "bpe": ("c21c04b9aa8113d8",
            "6497136fd73389e24875f5256c3de9e5acca4657e1960c14ace046b0fa5b0be9"),
}
DOCS = ["To be, or not to be, that is the question.\n",
        "Caf\u00e9 \u2014 na\u00efve <|endoftext|> \U0001f642",  # the token's text is text
        "Now is the winter of our discontent\nMade glorious summer by this sun of York"]


def folder_digest(folder: Path, drop_key_files: bool = False) -> str:
  """sha256 over the folder's files (name, sha256 of the contents), sorted by name; with
  `drop_key_files`, meta.json comes last, without the paths its key records."""
  h = hashlib.sha256()
  for p in sorted(folder.iterdir()):
    if p.is_file() and not p.name.startswith(".") and not (drop_key_files
                                                            and p.name == "meta.json"):
      h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
  if drop_key_files:
    meta = json.loads((folder / "meta.json").read_text())
    meta["key"].pop("files")  # paths of the temporary folder
    h.update(json.dumps(meta, sort_keys=True).encode())
  return h.hexdigest()


def split_at(tokens: np.ndarray, bos_id: int) -> list[np.ndarray]:
  """The documents of a stream that starts with the boundary token."""
  assert tokens[0] == bos_id
  starts = np.flatnonzero(tokens == bos_id)
  return [tokens[a + 1:b] for a, b in zip(starts, [*starts[1:], len(tokens)])]


def hf_tokenizer(path: Path, special: list[str]) -> Path:
  """A small byte-level BPE tokenizer.json with the given special tokens."""
  tok = tokenizer.train_bpe(" ".join(DOCS) * 4, 300)
  tok.hf.add_special_tokens(special)
  tok.hf.save(str(path))
  return path


# ------------------------------------------------------------------------------------------
# Tokenizers.

def test_byte_tokenizer_boundary_is_256_and_zero_bytes():
  tok = tokenizer.boundary_tokenizer(tokenizer.ByteTokenizer())
  assert (tok.vocab_size, tok.bos_id, tok.token_bytes[256], tok.token_bytes[:256].sum()) == (
      257, 256, 0, 256)
  ids = documents.prefix_boundary(tok.encode(DOCS[1]), tok.bos_id)
  assert ids[0] == 256 and tok.decode(ids) == DOCS[1]
  assert tokenizer.ByteTokenizer().bos_id is None and tokenizer.ByteTokenizer().vocab_size == 256
  with pytest.raises(ValueError, match="data.bos_token='<s>'.*byte tokenizer"):
    tokenizer.boundary_tokenizer(tokenizer.ByteTokenizer(), "<s>")


def test_trained_bpe_reserves_endoftext():
  plain = tokenizer.train_bpe(" ".join(DOCS) * 4, 300)
  tok = tokenizer.train_bpe(" ".join(DOCS) * 4, 300, boundary=True)
  assert plain.bos_id is None and plain.hf.token_to_id("<|endoftext|>") is None
  assert tok.hf.id_to_token(tok.bos_id) == "<|endoftext|>" and tok.token_bytes[tok.bos_id] == 0
  ids = tok.encode(DOCS[1])  # "<|endoftext|>" in the text is text, not the boundary
  assert tok.bos_id not in ids and tok.decode(ids) == DOCS[1]
  assert tokenizer.lossy_reason(tok, DOCS[1]) is None


def test_tokenizer_json_boundary_lookup(tmp_path):
  llama3 = tokenizer.HFTokenizer.from_file(hf_tokenizer(
      tmp_path / "l3.json", ["<|begin_of_text|>", "<|end_of_text|>"]))
  assert llama3.with_boundary().bos_token == "<|begin_of_text|>"
  llama2 = tokenizer.HFTokenizer.from_file(hf_tokenizer(tmp_path / "l2.json", ["<unk>", "<s>"]))
  assert llama2.with_boundary().bos_token == "<s>"
  assert llama2.with_boundary("<unk>").bos_id == llama2.hf.token_to_id("<unk>")
  named = llama2.with_boundary()
  assert named.token_bytes[named.bos_id] == 0 and llama2.bos_id is None  # a copy
  none = tokenizer.HFTokenizer.from_file(hf_tokenizer(tmp_path / "none.json", ["[PAD]"]))
  with pytest.raises(ValueError, match=r"none.json has no document-boundary token: none of "
                     r"<\|endoftext\|>.* \(\[PAD\]\); name one with data.bos_token"):
    none.with_boundary()
  with pytest.raises(ValueError, match=r"data.bos_token='the' is not a special token of "
                     r"tokenizer .*none.json \(its special tokens: \[PAD\]\)"):
    none.with_boundary("the")


# ------------------------------------------------------------------------------------------
# The embedded corpus.

def _fresh_shakespeare(data_dir, tmp_path) -> Path:
  """A copy of the prepared corpus (split texts, archive) without any tokenization."""
  src, root = data_dir / "shakespeare", tmp_path / "shakespeare"
  shutil.copytree(src / "corpus", root / "corpus")
  shutil.copy(src / shakespeare.ARCHIVE_NAME, root / shakespeare.ARCHIVE_NAME)
  return root


def test_default_shakespeare_shards_are_unchanged(byte_spec, data_dir, tmp_path):
  root = _fresh_shakespeare(data_dir, tmp_path)
  for name, digest in SHAKESPEARE_DIGESTS.items():
    shakespeare.tokenize_splits(root, name, 1024)
    assert folder_digest(shakespeare.tokenized_dir(root, name, 1024)) == digest, name


@pytest.mark.parametrize("name", ["byte", "bpe"])
def test_shakespeare_bos_starts_every_work(byte_spec, data_dir, tmp_path, name):
  root = _fresh_shakespeare(data_dir, tmp_path)
  cfg = config_dict.ConfigDict(dict(name="shakespeare", tokenizer=name, bpe_vocab_size=1024,
                                    data_dir=str(tmp_path), folio_val=True,
                                    document_separator="bos", seq_len=64))
  spec = data.prepare(cfg)
  assert Path(spec.train_files[0]).parent.name == ("byte_bos" if name == "byte" else "bpe1024_bos")
  tok = spec.tokenizer
  assert spec.bos_id == tok.bos_id and spec.token_bytes[spec.bos_id] == 0
  assert (spec.vocab_size, spec.bos_id) == ((257, 256) if name == "byte" else (1024, 0))
  works = shakespeare.work_documents(root)
  for split in shakespeare.SPLITS:
    docs = split_at(split_tokens(spec, split), spec.bos_id)
    assert len(docs) == len(works[split])
    if name == "byte":
      assert [tok.decode(d) for d in docs] == works[split]
    else:
      assert tok.decode(docs[-1]) == works[split][-1]
    assert spec.split_bytes[split] == sum(len(w.encode()) for w in works[split])
    assert int(spec.token_bytes[split_tokens(spec, split)].sum()) == spec.split_bytes[split]
  meta = json.loads((Path(spec.train_files[0]).parent / "meta.json").read_text())
  assert meta["bos_id"] == spec.bos_id and meta["document_separator"] == "bos"


# ------------------------------------------------------------------------------------------
# text and tfds.

def _text_corpus(folder: Path) -> Path:
  folder.mkdir()
  for i, doc in enumerate(DOCS):
    (folder / f"{i}.txt").write_text(doc, encoding="utf-8")
  return folder


def text_config(tmp_path, **overrides):
  cfg = dict(name="text", tokenizer="byte", bpe_vocab_size=300, seq_len=8,
             train_pattern=str(tmp_path / "t" / "[01].txt"),
             val_pattern=str(tmp_path / "t" / "2.txt"), data_dir=str(tmp_path / "cache"))
  return config_dict.ConfigDict({**cfg, **overrides})


def test_text_newline_caches_are_unchanged(tmp_path):
  folder = tmp_path / "t"
  folder.mkdir()
  (folder / "a.txt").write_text("To be, or not to be, that is the question.\n" * 50)
  (folder / "b.txt").write_text("Caf\u00e9 \u2014 na\u00efve, all the world's a stage")
  (folder / "c.txt").write_text("Now is the winter of our discontent\n" * 30)
  for name, (key, digest) in TEXT_CACHES.items():
    spec = data.prepare(config_dict.ConfigDict(dict(
        name="text", tokenizer=name, bpe_vocab_size=300, seq_len=8,
        train_pattern=str(folder / "*.txt"), data_dir=str(tmp_path / "cache"))))
    root = Path(spec.train_files[0]).parent
    assert (root.name, folder_digest(root, drop_key_files=True)) == (key, digest), name
    assert spec.bos_id is None


@pytest.mark.parametrize("name", ["byte", "bpe", "file"])
def test_text_bos_before_every_document(tmp_path, name):
  _text_corpus(tmp_path / "t")
  tok_name = str(hf_tokenizer(tmp_path / "gpt2ish.json", ["<|endoftext|>"])) \
      if name == "file" else name
  spec = data.prepare(text_config(tmp_path, tokenizer=tok_name, document_separator="bos"))
  newline = data.prepare(text_config(tmp_path, tokenizer=tok_name))
  assert newline.bos_id is None and newline.train_files[0] != spec.train_files[0]
  tok = spec.tokenizer
  assert spec.bos_id == tok.bos_id is not None and spec.token_bytes[spec.bos_id] == 0
  for split, want in (("train", DOCS[:2]), ("val", DOCS[2:])):
    tokens = split_tokens(spec, split)
    assert [tok.decode(d) for d in split_at(tokens, spec.bos_id)] == want  # no added "\n"
    assert spec.split_bytes[split] == sum(len(d.encode()) for d in want)
    assert int(spec.token_bytes[tokens].sum()) == spec.split_bytes[split]
  meta = json.loads((Path(spec.train_files[0]).parent / "meta.json").read_text())
  assert (meta["bos_id"], meta["key"]["document_separator"]) == (spec.bos_id, "bos")
  it = data.train_iterator(spec, seq_len=8, global_batch_size=2, seed=0)
  assert next(it)["inputs"].max() < spec.vocab_size


def test_text_bos_token_names_a_special_token(tmp_path):
  _text_corpus(tmp_path / "t")
  path = str(hf_tokenizer(tmp_path / "l2.json", ["<s>", "</s>"]))
  spec = data.prepare(text_config(tmp_path, tokenizer=path, document_separator="bos",
                                  bos_token="</s>"))
  assert spec.bos_id == spec.tokenizer.hf.token_to_id("</s>") == split_tokens(spec, "val")[0]
  bare = str(hf_tokenizer(tmp_path / "bare.json", []))
  with pytest.raises(ConfigError, match=r"data.tokenizer='.*bare.json': tokenizer .*bare.json "
                     "has no document-boundary token"):
    data.prepare(text_config(tmp_path, tokenizer=bare, document_separator="bos"))


def test_tfds_bos(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  records = {"train": [{"text": DOCS[0].encode()}, {"text": ""}, {"text": DOCS[1]}],
             "test": [{"text": DOCS[2]}]}
  source = lambda builder, split, **kwargs: records[split]
  cfg = config_dict.ConfigDict(dict(
      name="tfds", tokenizer="byte", seq_len=8, tfds_name="lm1b", tfds_val_split="test",
      data_dir=str(tmp_path / "cache"), document_separator="bos"))
  with tfds.testing.mock_data(as_data_source_fn=source):
    spec = data.prepare(cfg)
  assert spec.bos_id == 256
  assert [spec.tokenizer.decode(d) for d in split_at(split_tokens(spec, "train"), 256)] == \
      DOCS[:2]
  assert "tensorflow" not in sys.modules


# ------------------------------------------------------------------------------------------
# Config keys and the trainer's view.

def test_config_keys():
  c = config_lib.base_config()
  assert (c.data.document_separator, c.data.bos_token) == ("newline", None)
  config_lib.validate(c)
  c.data.document_separator = "eos"
  with pytest.raises(ConfigError, match=r"data.document_separator='eos' is not allowed"):
    config_lib.validate(c)
  c.data.document_separator = "newline"
  c.data.bos_token = "<s>"
  with pytest.raises(ConfigError, match=r"data.bos_token='<s>' is only used with "
                     "data.document_separator='bos'"):
    config_lib.validate(c)
  c.data.document_separator = "bos"
  with pytest.raises(ConfigError, match=r"data.bos_token='<s>' names a token of a "
                     r"tokenizer.json; data.tokenizer='byte' has its own"):
    config_lib.validate(c)
  c.data.update(name="shards", bos_token=None, train_pattern="t*.bin", val_pattern="v*.bin")
  c.model.vocab_size = 256
  with pytest.raises(ConfigError, match=r"data.document_separator='bos': token shards are "
                     "tokenized already"):
    config_lib.validate(c)


def test_spec_bos_id_reaches_the_trainer(tmp_path):
  _text_corpus(tmp_path / "t")
  cfg = text_config(tmp_path, document_separator="bos")
  spec = data.prepare(cfg)
  assert data.bos_id(cfg, spec) == 256  # data.bos_id unset: the data's
  cfg.bos_id = 256
  assert data.bos_id(cfg, data.prepare(cfg)) == 256
  cfg.bos_id = 10
  with pytest.raises(ConfigError, match=r"data.bos_id=10 but the text data starts each "
                     "document with token 256"):
    data.prepare(cfg)
  plain = text_config(tmp_path, bos_id=10)  # no boundary in the data: the config's stands
  assert data.bos_id(plain, data.prepare(plain)) == 10
