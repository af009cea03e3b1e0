"""Tokenizers: byte-level, and byte-level BPE trained with HF `tokenizers`.

Both share one small interface (`Tokenizer` below). Besides encode/decode, each tokenizer knows
`token_bytes`, the number of UTF-8 bytes every token id stands for. Because both tokenizers are
byte-level (every id is an exact byte string), the bytes of any scored window are
`sum(token_bytes[targets])`, which makes bits per byte exact for any set of windows:
`bpb = sum(loss_nats) / ln 2 / sum(token_bytes[targets])`.

The BPE uses the GPT-2 byte-to-unicode alphabet (ByteLevel pre-tokenizer and decoder, no
normalizer), so encoding is lossless: `decode(encode(text)) == text` for any string.
(This module is not called `tokenizers.py`: that name would shadow the HF package.)
"""

from __future__ import annotations

import functools
import os
import re
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from jaxgpt import files

MIN_BPE_VOCAB = 256  # the byte alphabet itself
MAX_BPE_VOCAB = 1 << 16  # token shards store uint16


class Tokenizer(Protocol):
  """What the rest of jaxgpt needs from a tokenizer."""
  name: str
  vocab_size: int
  token_bytes: np.ndarray  # int32[vocab_size]: UTF-8 bytes each id stands for

  def encode(self, text: str) -> np.ndarray:  # int32[num_tokens]
    ...

  def decode(self, ids) -> str:
    ...

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:  # each as encode(text)
    ...


class ByteTokenizer:
  """Token ids are the UTF-8 bytes of the text; vocabulary 256, one byte per token."""
  name = "byte"
  vocab_size = 256

  def __init__(self):
    self.token_bytes = np.ones(self.vocab_size, dtype=np.int32)

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    return [self.encode(t) for t in texts]

  def decode(self, ids) -> str:
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise ValueError(f"byte token ids must lie in [0, 256), got [{ids.min()}, {ids.max()}]")
    return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


@functools.cache
def unicode_to_byte() -> dict[str, int]:
  """The inverse of GPT-2's byte-to-unicode map that the ByteLevel pre-tokenizer uses."""
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
               *range(ord("®"), ord("ÿ") + 1)]
  chars = list(printable)
  extra = 0
  for b in range(256):
    if b not in printable:
      printable.append(b)
      chars.append(256 + extra)
      extra += 1
  return {chr(c): b for b, c in zip(printable, chars)}


# A cut after a lone "\n" between two non-space characters is always a ByteLevel pre-token
# boundary (a pre-token holding "\n" is all whitespace, and a longer whitespace run would split
# differently at a chunk's end), so encoding chunks cut there equals encoding the whole text.
_CUT = re.compile(r"(?<=\S)\n(?=\S)")
_CHUNK_CHARS = 1 << 16


def _chunks(text: str, size: int = _CHUNK_CHARS) -> Iterator[str]:
  """`text` in pieces of about `size` characters, cut only where encoding is unaffected."""
  pos = 0
  while pos < len(text):
    cut = _CUT.search(text, pos + size)
    end = cut.end() if cut else len(text)
    yield text[pos:end]
    pos = end


class BPETokenizer:
  """A byte-level BPE (HF `tokenizers`), loaded from or saved to a `tokenizer.json`."""
  name = "bpe"

  def __init__(self, hf: tokenizers.Tokenizer, source: str = "<memory>"):
    self.hf = hf
    self.vocab_size = hf.get_vocab_size()
    self.token_bytes = _token_byte_lengths(hf, source)

  @classmethod
  def from_file(cls, path: str | os.PathLike) -> "BPETokenizer":
    try:
      hf = tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:
      raise ValueError(f"cannot load tokenizer {path}: {e}") from e
    return cls(hf, str(path))

  def save(self, path: str | os.PathLike) -> None:
    """Writes `tokenizer.json` atomically."""
    files.atomic_write(path, self.hf.to_str().encode("utf-8"))

  def encode(self, text: str) -> np.ndarray:
    """Token ids of `text` as int32 (long texts in parallel chunks; same ids as one call)."""
    chunks = list(_chunks(text))
    encode_batch = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
    ids = [np.asarray(e.ids, dtype=np.int32) for e in encode_batch(chunks)]
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    """`[encode(t) for t in texts]` in one parallel call (many short documents)."""
    pieces = [list(_chunks(t)) for t in texts]
    encode_batch = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
    flat = iter(encode_batch([c for p in pieces for c in p]))
    out = []
    for p in pieces:
      ids = [np.asarray(next(flat).ids, dtype=np.int32) for _ in p]
      out.append(np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32))
    return out

  def decode(self, ids) -> str:
    return self.hf.decode([int(i) for i in np.asarray(ids).reshape(-1)])


# The built-in `data.tokenizer` names (the sources that accept a tokenizer.json take its path too).
NAMES = (ByteTokenizer.name, BPETokenizer.name)


def _token_byte_lengths(hf: tokenizers.Tokenizer, source: str) -> np.ndarray:
  """int32[vocab]: bytes each id decodes to (0 for special tokens, which stand for no text)."""
  to_byte = unicode_to_byte()
  special = {t.content for t in hf.get_added_tokens_decoder().values() if t.special}
  lengths = np.zeros(hf.get_vocab_size(), dtype=np.int32)
  for i in range(len(lengths)):
    token = hf.id_to_token(i)
    if token is None or token in special:
      continue
    if any(c not in to_byte for c in token):
      raise ValueError(f"tokenizer {source} is not byte-level: token {i} ({token!r}) is not "
                       "a byte string (train it with the ByteLevel pre-tokenizer)")
    lengths[i] = len(token)
  return lengths


def train_bpe(text: str | Iterable[str], vocab_size: int) -> BPETokenizer:
  """Trains a byte-level BPE of `vocab_size` ids on `text`, one string or an iterable of
  documents read once (deterministic for the same text)."""
  if not MIN_BPE_VOCAB <= vocab_size <= MAX_BPE_VOCAB:
    raise ValueError(f"data.bpe_vocab_size={vocab_size} must lie in "
                     f"[{MIN_BPE_VOCAB}, {MAX_BPE_VOCAB}]")
  hf = tokenizers.Tokenizer(models.BPE())
  hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  hf.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=[],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  texts = (text,) if isinstance(text, str) else text
  hf.train_from_iterator((c for t in texts for c in _chunks(t)), trainer=trainer)
  return BPETokenizer(hf)


def load_tokenizer(name_or_path: str) -> Tokenizer:
  """`"byte"`, or a byte-level BPE from the path of a `tokenizer.json`."""
  if name_or_path == "byte":
    return ByteTokenizer()
  return BPETokenizer.from_file(name_or_path)
