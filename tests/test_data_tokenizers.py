"""Any tokenizer.json: byte-level BPE, metaspace (SentencePiece style: a Unigram with Metaspace
steps, and a Llama-2-style BPE with byte fallback) and WordPiece, each trained here with the
`tokenizers` trainers on real text (no download). Byte counts are checked against the HF
decoder's output, and the lossy ones are named."""

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from ml_collections import config_dict
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from jaxgpt import data
from jaxgpt.data import tokenizer
from tests.conftest import ROOT
from tests.conftest_data import split_tokens
from tests.helpers import HAMLET

# Hamlet III.1 and Sonnet 18 (public domain), then text no tokenizer here was trained on.
SONNET = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
  So long as men can breathe or eyes can see,
  So long lives this, and this gives life to thee.
"""
TRAIN_TEXT = HAMLET + "\n" + SONNET
EVAL_TEXT = SONNET + "\n" + HAMLET[:400] + "Caf\u00e9 \u2014 \u03a9\u03bc\u03ad\u03b3\u03b1\t 42%\n"
SPECIALS = ["<unk>", "<s>", "</s>"]


def metaspace_unigram() -> tokenizers.Tokenizer:
  """SentencePiece-style Unigram: Metaspace pre-tokenizer and decoder (dummy prefix 'always')."""
  hf = tokenizers.Tokenizer(models.Unigram())
  hf.pre_tokenizer = pre_tokenizers.Metaspace()
  hf.decoder = decoders.Metaspace()
  hf.train_from_iterator([TRAIN_TEXT, EVAL_TEXT], trainers.UnigramTrainer(
      vocab_size=250, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False))
  return hf


def metaspace_byte_fallback_bpe() -> tokenizers.Tokenizer:
  """A BPE laid out as Llama-2's tokenizer.json: a Prepend("\\u2581") + Replace(" ") normalizer,
  no pre-tokenizer, <0x00>..<0xFF> pieces in the vocabulary (byte fallback), and a decoder
  Replace("\\u2581", " "), ByteFallback, Fuse, Strip(" ", 1, 0). Trained on TRAIN_TEXT only, so
  EVAL_TEXT's Greek letters fall back to bytes."""
  trained = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
  trained.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                             normalizers.Replace(" ", "\u2581")])
  trained.train_from_iterator([TRAIN_TEXT], trainers.BpeTrainer(
      vocab_size=400, special_tokens=SPECIALS, show_progress=False))
  model = json.loads(trained.to_str())["model"]
  vocab = {t: i for i, t in enumerate(SPECIALS + [f"<0x{b:02X}>" for b in range(256)])}
  for piece in sorted(model["vocab"], key=model["vocab"].get):
    vocab.setdefault(piece, len(vocab))
  merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
  hf = tokenizers.Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True))
  hf.add_special_tokens(SPECIALS)
  hf.normalizer = trained.normalizer
  hf.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                  decoders.Fuse(), decoders.Strip(" ", 1, 0)])
  return hf


def wordpiece_lowercase() -> tokenizers.Tokenizer:
  """BERT-style WordPiece: lowercasing BertNormalizer, BertPreTokenizer, WordPiece decoder, and
  a post-processor that adds [CLS] ... [SEP] (which jaxgpt's encode must not add)."""
  hf = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
  hf.normalizer = normalizers.BertNormalizer(lowercase=True)
  hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  hf.decoder = decoders.WordPiece()
  hf.train_from_iterator([TRAIN_TEXT], trainers.WordPieceTrainer(
      vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], show_progress=False))
  cls, sep = hf.token_to_id("[CLS]"), hf.token_to_id("[SEP]")
  hf.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
  return hf


def byte_level_bpe() -> tokenizers.Tokenizer:
  return tokenizer.train_bpe(TRAIN_TEXT, 400).hf


BUILDERS = {"byte_level": byte_level_bpe, "metaspace_unigram": metaspace_unigram,
            "metaspace_byte_fallback": metaspace_byte_fallback_bpe,
            "wordpiece": wordpiece_lowercase}
LOSSLESS = ("byte_level", "metaspace_unigram", "metaspace_byte_fallback")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
  """name -> the tokenizer.json each builder's tokenizer is saved as."""
  folder = tmp_path_factory.mktemp("tokenizers")
  out = {}
  for name, build in BUILDERS.items():
    out[name] = folder / f"{name}.json"
    build().save(str(out[name]))
  return out


def word_spans(tok, ids) -> list[np.ndarray]:
  """`ids` cut before every token that starts a word: "\\u2581" (metaspace), "\\u0120" (GPT-2's
  space, byte-level), or no "##" (WordPiece). A character's bytes never straddle a cut."""
  pieces = [tok.hf.id_to_token(int(i)) for i in ids]
  if tok.kind == "wordpiece":
    starts = [not p.startswith("##") for p in pieces]
  else:
    starts = [p.startswith("\u2581" if tok.kind == "metaspace" else "\u0120") for p in pieces]
  cuts = [k for k, s in enumerate(starts) if s and k]
  return np.split(np.asarray(ids), cuts)


# ------------------------------------------------------------------------------------------
# Per-token bytes.

@pytest.mark.parametrize("name", list(BUILDERS))
def test_token_bytes_add_up_to_the_decoded_text(saved, name):
  tok = data.load_tokenizer(str(saved[name]))
  assert tok.kind == ("byte_level" if name == "byte_level" else name.split("_")[0])
  ids = tok.encode(EVAL_TEXT)
  assert ids.dtype == np.int32 and 0 <= ids.min() and ids.max() < tok.vocab_size
  spans = word_spans(tok, ids)
  assert len(spans) > 50
  for span in spans:  # the HF decoder is the reference, span by span
    assert int(tok.token_bytes[span].sum()) == len(tok.decode(span).encode("utf-8")), (
        [tok.hf.id_to_token(int(i)) for i in span])
  total = int(tok.token_bytes[ids].sum())
  assert total == sum(len(tok.decode(s).encode("utf-8")) for s in spans)
  if name in LOSSLESS:  # then it is the text itself
    assert tok.decode(ids) == EVAL_TEXT and total == len(EVAL_TEXT.encode("utf-8"))
    assert tokenizer.lossy_reason(tok, EVAL_TEXT) is None
  else:  # WordPiece: no whitespace, lowercased, accents stripped
    assert total == len("".join(tok.decode(s) for s in spans).encode("utf-8"))
    assert total < len("".join(EVAL_TEXT.split()).encode("utf-8"))


def test_per_kind_rules(saved):
  """"\\u2581" is one byte, "##" none, special tokens none, a byte-fallback piece one byte."""
  meta = data.load_tokenizer(str(saved["metaspace_byte_fallback"]))
  tb, to_id = meta.token_bytes, meta.hf.token_to_id
  assert tb[to_id("<0x41>")] == tb[to_id("<0xCE>")] == 1
  assert [tb[to_id(t)] for t in SPECIALS] == [0, 0, 0]
  assert tb[to_id("\u2581")] == 1 and tb[to_id("\u2581the")] == 4
  greek = meta.encode("\u03a9")  # not in the training text: two byte-fallback pieces
  assert [meta.hf.id_to_token(int(i)) for i in greek] == ["<0xCE>", "<0xA9>"]
  wp = data.load_tokenizer(str(saved["wordpiece"]))
  tb, to_id = wp.token_bytes, wp.hf.token_to_id
  assert [tb[to_id(t)] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 0, 0, 0]
  sub = next(t for t in wp.hf.get_vocab() if t.startswith("##") and len(t) == 4)
  assert tb[to_id(sub)] == 2 and tb[to_id("the")] == 3
  # No special tokens are added when encoding, though the post-processor would add them.
  assert to_id("[CLS]") not in wp.encode("to be") and to_id("[CLS]") in wp.hf.encode("to be").ids


def test_metaspace_is_encoded_without_the_dummy_prefix(saved):
  original = tokenizers.Tokenizer.from_file(str(saved["metaspace_unigram"]))
  assert original.encode("To be").tokens[0].startswith("\u2581")  # the prefix ...
  assert original.decode(original.encode(" lead").ids) == "lead"  # ... and why it loses text
  for name in ("metaspace_unigram", "metaspace_byte_fallback"):
    tok = data.load_tokenizer(str(saved[name]))
    assert not tok.hf.encode("To be").tokens[0].startswith("\u2581")
    for text in (" lead", "lead", "  two\n"):
      assert tok.decode(tok.encode(text)) == text
      assert int(tok.token_bytes[tok.encode(text)].sum()) == len(text.encode())
    again = tokenizer.without_dummy_prefix(json.loads(tok.hf.to_str()))
    assert again == json.loads(tok.hf.to_str())  # idempotent: the cached copy loads the same


# ------------------------------------------------------------------------------------------
# Lossy tokenizers.

def test_lossy_detection(saved):
  wp = data.load_tokenizer(str(saved["wordpiece"]))
  reason = tokenizer.lossy_reason(wp, EVAL_TEXT)
  assert reason.startswith("decode(encode(text)) != text: at character 0, 'Shall I comp'")
  assert tokenizer.lossy_reason(wp, "lower case only") is not None  # whitespace is lost
  bpe = data.load_tokenizer(str(saved["byte_level"]))
  assert tokenizer.lossy_reason(bpe, EVAL_TEXT) is None
  assert tokenizer.lossy_reason(bpe, tokenizer.PROBE_TEXT) is None
  assert tokenizer.lossy_reason(tokenizer.ByteTokenizer(), tokenizer.PROBE_TEXT) is None
  # A Unigram without byte fallback maps unseen characters to <unk>: lossy on such text.
  uni = data.load_tokenizer(str(saved["metaspace_unigram"]))
  assert "comes back as" in tokenizer.lossy_reason(uni, "\u65e5\u672c")


def _text_config(tmp_path, tok_path) -> config_dict.ConfigDict:
  folder = tmp_path / "texts"
  folder.mkdir(exist_ok=True)
  (folder / "train.txt").write_text(TRAIN_TEXT, encoding="utf-8")
  (folder / "val.txt").write_text(EVAL_TEXT, encoding="utf-8")
  return config_dict.ConfigDict(dict(
      name="text", tokenizer=str(tok_path), seq_len=8, bpe_vocab_size=300,
      train_pattern=str(folder / "train.txt"), val_pattern=str(folder / "val.txt"),
      val_fraction=None, data_dir=str(tmp_path / "cache")))


@pytest.mark.parametrize("name", ["metaspace_byte_fallback", "wordpiece"])
def test_text_source_records_and_logs_lossiness(saved, tmp_path, caplog, name):
  with caplog.at_level(logging.WARNING):
    spec = data.prepare(_text_config(tmp_path, saved[name]))
  meta = json.loads((Path(spec.val_files[0]).parent / "meta.json").read_text())
  val = meta["splits"]["val"]
  assert val["bytes"] == spec.split_bytes["val"] == len(EVAL_TEXT.encode())
  assert val["token_bytes"] == int(spec.token_bytes[split_tokens(spec, "val")].sum())
  warned = [r.getMessage() for r in caplog.records if "lossy" in r.getMessage()]
  if name == "wordpiece":
    assert meta["lossy"] == spec.lossy and spec.lossy.startswith("decode(encode(text)) != text")
    assert val["token_bytes"] < val["bytes"] and meta["tokenizer_kind"] == "wordpiece"
    assert len(warned) == 1 and spec.lossy in warned[0] and "val_bpb" in warned[0]
  else:  # exact: val_bpb's denominator is the raw text's bytes
    assert meta["lossy"] is None and spec.lossy is None and not warned
    assert val["token_bytes"] == val["bytes"] and meta["tokenizer_kind"] == "metaspace"
    assert spec.tokenizer.decode(split_tokens(spec, "val")) == EVAL_TEXT
  caplog.clear()
  with caplog.at_level(logging.WARNING):  # reused from the cache: logged again
    again = data.prepare(_text_config(tmp_path, saved[name]))
  assert again.lossy == spec.lossy
  assert len([r for r in caplog.records if "lossy" in r.getMessage()]) == len(warned)


def test_a_run_on_a_lossy_tokenizer_says_so_in_its_summary(saved, tmp_path):
  cfg = _text_config(tmp_path, saved["wordpiece"])
  args = ["--config", "configs/gpt.py:test", *(f"--config.data.{k}={v}" for k, v in cfg.items()
                                                if v is not None),
          "--config.train.steps=2", "--config.train.eval_every=2", "--workdir",
          str(tmp_path / "run")]
  proc = subprocess.run([sys.executable, "-m", "jaxgpt.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["tokenizer_lossy"].startswith("decode(encode(text)) != text")
  assert "lossy" in proc.stderr and summary["val_bpb"] is not None


def test_a_lossy_tokenizer_s_val_bpb_divides_by_the_raw_bytes(saved, tmp_path):
  from jaxgpt.train import evaluate  # the trainer's evaluation, not a data module
  spec = data.prepare(_text_config(tmp_path, saved["wordpiece"]))
  val = split_tokens(spec, "val")
  token_bytes = int(spec.token_bytes[val].sum())
  raw = len(EVAL_TEXT.encode())
  assert spec.lossy and token_bytes < raw == spec.split_bytes["val"]
  assert evaluate.split_token_bytes(spec, "val") == token_bytes
  # The whole split scored: exactly the raw bytes; half of its token bytes: half of them.
  for scored in (token_bytes, token_bytes // 2):
    s = {"val_loss": 2.0, "val_tokens": 100, "val_bytes": scored, "val_bpb": 200 / (
        math.log(2) * scored)}
    out = evaluate.raw_bytes_summary(spec, "val", s)
    assert out["val_bytes"] == pytest.approx(raw * scored / token_bytes)
    assert out["val_bpb"] == pytest.approx(200 / (math.log(2) * raw * scored / token_bytes))
    assert (out["val_bytes_tokens"], out["val_bpb_tokens"]) == (scored, s["val_bpb"])
  (tmp_path / "b").mkdir()
  bpe = data.prepare(_text_config(tmp_path / "b", saved["byte_level"]))
  assert evaluate.raw_bytes_summary(bpe, "val", s) == {}  # exact: nothing to correct


def test_shards_source_checks_the_tokenizer_on_a_probe(saved, tmp_path, caplog):
  wp = data.load_tokenizer(str(saved["wordpiece"]))
  for split in ("train", "val"):
    data.write_shard(tmp_path / f"{split}_0.bin", wp.encode(TRAIN_TEXT), wp.vocab_size)
  cfg = config_dict.ConfigDict(dict(
      name="shards", tokenizer=str(saved["wordpiece"]), seq_len=8,
      train_pattern=str(tmp_path / "train_*.bin"), val_pattern=str(tmp_path / "val_*.bin")))
  with caplog.at_level(logging.WARNING):
    spec = data.prepare(cfg)
  assert spec.tokenizer.kind == "wordpiece" and spec.lossy.startswith("decode(encode(text))")
  assert any("wordpiece.json" in r.getMessage() and "lossy" in r.getMessage()
             for r in caplog.records)
  cfg.tokenizer = str(saved["byte_level"])
  bl = data.load_tokenizer(str(saved["byte_level"]))
  for split in ("train", "val"):
    data.write_shard(tmp_path / f"{split}_0.bin", bl.encode(TRAIN_TEXT), bl.vocab_size)
  assert data.prepare(cfg).lossy is None


def test_an_unknown_kind_is_refused_naming_the_file(tmp_path):
  hf = tokenizers.Tokenizer(models.WordLevel(unk_token="[UNK]"))
  hf.pre_tokenizer = pre_tokenizers.Whitespace()
  hf.train_from_iterator([TRAIN_TEXT], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
  path = tmp_path / "wordlevel.json"
  hf.save(str(path))
  with pytest.raises(ValueError, match=r"wordlevel.json is not byte-level, metaspace or "
                                       r"WordPiece \(model WordLevel.*Whitespace"):
    data.load_tokenizer(str(path))
