"""Tokenizers: byte-level, a byte-level BPE trained here, and any `tokenizer.json` of the HF
`tokenizers` library whose kind jaxgpt knows how to count in bytes.

All share one small interface (`Tokenizer` below). Besides encode/decode, each tokenizer knows
`token_bytes`, the number of UTF-8 bytes of text every token id stands for, so the bytes of any
scored window are `sum(token_bytes[targets])` and
`bpb = sum(loss_nats) / ln 2 / sum(token_bytes[targets])`. Per kind (`HFTokenizer.kind`):
- `byte_level` (GPT-2 style: ByteLevel pre-tokenizer / decoder): a token is a byte string in
  GPT-2's byte-to-unicode alphabet; its bytes are its characters.
- `metaspace` (SentencePiece style: a Metaspace pre-tokenizer or decoder, or a decoder that
  replaces "\u2581" by " "): each "\u2581" is one byte of space, byte-fallback pieces
  `<0xXX>` are one byte, the rest their UTF-8 length. jaxgpt encodes without the dummy prefix
  (the "\u2581" a SentencePiece tokenizer puts before the text, as parameter-golf's
  `add_dummy_prefix=False`), so every "\u2581" is a real space of the text.
- `wordpiece` (BERT style): the continuing-subword prefix ("##") is zero bytes, the rest of a
  piece its UTF-8 length; the whitespace between words is in no token.
Special tokens and the unknown token stand for no bytes (0). Non-special added tokens count
their content's UTF-8 length.

When `decode(encode(text)) == text` and every token is counted as above, the byte sums equal
the text's UTF-8 bytes exactly (byte-level always; metaspace when its normalizer only marks
spaces and every character is a piece or falls back to bytes). A tokenizer that normalizes
(lowercases, NFKC, strips accents), drops whitespace (WordPiece) or maps text to an unknown
token is *lossy*: its tokens do not stand for the raw text; val_bpb then scales its tokens'
bytes to the split's raw bytes where they are known (`val_bpb_tokens` keeps the tokens' own
count). `lossy_reason(tok, sample)` says why on a sample of text (None when lossless); the
data sources log it and record it (`DataSpec.lossy`, meta.json).

Document boundary (`boundary_tokenizer`): every kind has a token that starts each document
when `data.document_separator = "bos"` (modded-nanogpt's and parameter-golf's layout,
`[bos] + encode(document)`). It stands for no bytes (`token_bytes[bos_id] == 0`) and text never
encodes to it (special tokens in the text are encoded as text):
- the byte tokenizer: id 256, past the bytes (vocabulary 257);
- a BPE trained here: the special token `BOS_TOKEN` ("<|endoftext|>"), reserved in training;
- a `tokenizer.json`: the special token named by `data.bos_token`, else the first of
  `BOS_TOKENS` among its special tokens; none is one error naming the file.
`tok.bos_id` is its id (None: no boundary token).
(This module is not called `tokenizers.py`: that name would shadow the HF package.)
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from jaxgpt import files

MIN_BPE_VOCAB = 256  # the byte alphabet itself
MAX_BPE_VOCAB = 1 << 16  # a BPE trained here: more ids than any corpus of this size supports
KINDS = ("byte_level", "metaspace", "wordpiece")  # the kinds of tokenizer.json jaxgpt counts
SPACE_MARK = "\u2581"  # "▁", SentencePiece's (metaspace's) mark for a space
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # a byte-fallback piece
BYTE_BOS_ID = 256  # the byte tokenizer's boundary token, past the 256 bytes
BOS_TOKEN = "<|endoftext|>"  # the boundary token a BPE trained here reserves
# Boundary tokens looked for, in order, among a tokenizer.json's special tokens (GPT-2 and
# Qwen, Llama 3, Llama 2 / Mistral / SentencePiece, Gemma, others).
BOS_TOKENS = ("<|endoftext|>", "<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>",
              "<|bos|>")
PROBE_TEXT = ("The Quick brown fox, jumping.\n\tIndented  and double-spaced; na\u00efve "
              "caf\u00e9 \u2014 \u65e5\u672c\u8a9e \U0001f642\n")  # where no corpus text is at hand


class Tokenizer(Protocol):
  """What the rest of jaxgpt needs from a tokenizer."""
  name: str
  kind: str  # "byte", or one of KINDS
  vocab_size: int
  token_bytes: np.ndarray  # int32[vocab_size]: UTF-8 bytes each id stands for
  bos_id: int | None  # the boundary token that starts each document, or None

  def encode(self, text: str) -> np.ndarray:  # int32[num_tokens]
    ...

  def decode(self, ids) -> str:
    ...

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:  # each as encode(text)
    ...


class ByteTokenizer:
  """Token ids are the UTF-8 bytes of the text; vocabulary 256, one byte per token. With
  `boundary`, id 256 (`BYTE_BOS_ID`, zero bytes) starts each document: vocabulary 257."""
  name = kind = "byte"

  def __init__(self, boundary: bool = False):
    self.bos_id = BYTE_BOS_ID if boundary else None
    self.vocab_size = 257 if boundary else 256
    self.token_bytes = np.ones(self.vocab_size, dtype=np.int32)
    self.token_bytes[256:] = 0

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    return [self.encode(t) for t in texts]

  def decode(self, ids) -> str:
    """The text of `ids`; boundary tokens decode to nothing."""
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise ValueError(f"byte token ids must lie in [0, {self.vocab_size}), got "
                       f"[{ids.min()}, {ids.max()}]")
    ids = ids[ids != self.bos_id] if self.bos_id is not None else ids
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


# ------------------------------------------------------------------------------------------
# A tokenizer.json: which kind it is, and how many bytes each of its tokens stands for.

def _parts(node: dict | None, members: str) -> list[dict]:
  """The steps of a normalizer / pre-tokenizer / decoder `node`, Sequences flattened (the
  dicts themselves, so a caller may edit them); `members` is the Sequence's list key."""
  if not node:
    return []
  if node.get("type") == "Sequence":
    return [p for m in node.get(members, []) for p in _parts(m, members)]
  return [node]


def _drop(node: dict | None, members: str, unwanted) -> dict | None:
  """`node` without the steps for which `unwanted(step)` holds (None if nothing is left)."""
  if not node or unwanted(node):
    return None
  if node.get("type") == "Sequence":
    kept = [k for k in (_drop(m, members, unwanted) for m in node.get(members, [])) if k]
    return {**node, members: kept} if kept else None
  return node


def _steps(spec: dict) -> list[dict]:
  """The pre-tokenizer and decoder steps of a tokenizer.json."""
  return (_parts(spec.get("pre_tokenizer"), "pretokenizers")
          + _parts(spec.get("decoder"), "decoders"))


def _space_mark(step: dict) -> str | None:
  """The character a Metaspace step, or a decoder Replace of it by " ", writes for a space."""
  if step.get("type") == "Metaspace":
    return step.get("replacement", SPACE_MARK)
  if step.get("type") == "Replace" and step.get("content") == " ":
    return step.get("pattern", {}).get("String")
  return None


def tokenizer_kind(spec: dict) -> str | None:
  """The kind (one of KINDS) of the tokenizer.json `spec` (parsed JSON), or None when jaxgpt
  cannot tell what its tokens stand for."""
  types = {step.get("type") for step in _steps(spec)}
  if "ByteLevel" in types:
    return "byte_level"
  if spec.get("model", {}).get("type") == "WordPiece" or "WordPiece" in types:
    return "wordpiece"
  if any(_space_mark(step) for step in _steps(spec)):
    return "metaspace"
  return None


def without_dummy_prefix(spec: dict) -> dict:
  """A copy of a metaspace tokenizer.json that puts no "\u2581" before the text (Metaspace
  prepend_scheme "never", no Prepend normalizer) and so strips none when decoding (no leading
  Strip decoder): every "\u2581" of an encoding is then a space of the text."""
  spec = copy.deepcopy(spec)
  for step in _steps(spec):
    if step.get("type") == "Metaspace":
      if "add_prefix_space" in step:  # the format of tokenizers < 0.14
        step["add_prefix_space"] = False
      if "prepend_scheme" in step or "add_prefix_space" not in step:
        step["prepend_scheme"] = "never"
  spec["normalizer"] = _drop(spec.get("normalizer"), "normalizers",
                             lambda n: n.get("type") == "Prepend")
  spec["decoder"] = _drop(spec.get("decoder"), "decoders",
                          lambda d: d.get("type") == "Strip" and d.get("start", 0) > 0)
  return spec


def _unknown_token(spec: dict) -> str | None:
  model = spec.get("model", {})
  if model.get("type") == "Unigram" and model.get("unk_id") is not None:
    return model["vocab"][model["unk_id"]][0]
  return model.get("unk_token")


def piece_bytes(kind: str, spec: dict, source: str):
  """piece -> the UTF-8 bytes of text a model token of this kind stands for."""
  if kind == "byte_level":
    to_byte = unicode_to_byte()

    def count(piece: str) -> int:
      if any(c not in to_byte for c in piece):
        raise ValueError(f"tokenizer {source} is not byte-level: token {piece!r} is not a "
                         "byte string (train it with the ByteLevel pre-tokenizer)")
      return len(piece)
    return count
  if kind == "metaspace":
    mark = next(m for m in map(_space_mark, _steps(spec)) if m)
    fallback = bool(spec.get("model", {}).get("byte_fallback"))
    return lambda piece: (1 if fallback and BYTE_PIECE.fullmatch(piece)
                          else len(piece.replace(mark, " ").encode("utf-8")))
  prefix = spec.get("model", {}).get("continuing_subword_prefix") or "##"
  return lambda piece: len((piece[len(prefix):] if piece.startswith(prefix) else piece)
                           .encode("utf-8"))


def token_byte_lengths(hf: tokenizers.Tokenizer, kind: str, spec: dict,
                       source: str) -> np.ndarray:
  """int32[vocab]: the bytes of text each id stands for (see the module docstring)."""
  added = {t.content: t.special for t in hf.get_added_tokens_decoder().values()}
  unknown = _unknown_token(spec)
  count = piece_bytes(kind, spec, source)
  lengths = np.zeros(hf.get_vocab_size(), dtype=np.int32)
  for i in range(len(lengths)):
    token = hf.id_to_token(i)
    if token is None or token == unknown or added.get(token, False):
      continue  # no such id, the unknown token, a special token: no bytes of text
    lengths[i] = len(token.encode("utf-8")) if token in added else count(token)
  return lengths


class HFTokenizer:
  """A tokenizer of the HF `tokenizers` library of one of KINDS, loaded from or saved to a
  `tokenizer.json`. Encoding adds no special tokens (no post-processor's [CLS] / <s>)."""
  name = "bpe"

  def __init__(self, hf: tokenizers.Tokenizer, source: str = "<memory>"):
    spec = json.loads(hf.to_str())
    self.kind = tokenizer_kind(spec)
    if self.kind is None:
      steps = sorted({str(s.get("type")) for s in _steps(spec)}) or ["none"]
      raise ValueError(f"tokenizer {source} is not byte-level, metaspace or WordPiece (model "
                       f"{spec.get('model', {}).get('type')}, pre-tokenizer/decoder steps "
                       f"{', '.join(steps)}): jaxgpt cannot count the bytes of its tokens")
    if self.kind == "metaspace":
      spec = without_dummy_prefix(spec)
      hf = tokenizers.Tokenizer.from_str(json.dumps(spec))
    self.hf = hf
    self.source = source
    self.vocab_size = hf.get_vocab_size()
    self.token_bytes = token_byte_lengths(hf, self.kind, spec, source)
    self.bos_id = None

  def with_boundary(self, bos_token: str | None = None) -> "HFTokenizer":
    """A copy whose `bos_id` is the special token `bos_token` (None: the first of BOS_TOKENS
    it has) and which encodes special tokens in the text as text, so only the boundaries a
    source adds are boundary tokens."""
    bos_id = find_bos_id(self.hf, bos_token, self.source)
    out = copy.copy(self)
    out.hf = tokenizers.Tokenizer.from_str(self.hf.to_str())
    out.hf.encode_special_tokens = True
    out.bos_id = bos_id
    out.bos_token = self.hf.id_to_token(bos_id)
    return out

  @classmethod
  def from_file(cls, path: str | os.PathLike) -> "HFTokenizer":
    try:
      hf = tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:
      raise ValueError(f"cannot load tokenizer {path}: {e}") from e
    return cls(hf, str(path))

  def save(self, path: str | os.PathLike) -> None:
    """Writes `tokenizer.json` atomically (as jaxgpt encodes: a metaspace one without its
    dummy prefix)."""
    files.atomic_write(path, self.hf.to_str().encode("utf-8"))

  def _pieces(self, text: str) -> list[str]:
    """`text` cut where encoding is unaffected (byte-level only; other kinds whole)."""
    return list(_chunks(text)) if self.kind == "byte_level" else [text]

  def _encode_all(self, texts: list[str]) -> list[np.ndarray]:
    encode_batch = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
    return [np.asarray(e.ids, dtype=np.int32)
            for e in encode_batch(texts, add_special_tokens=False)]

  def encode(self, text: str) -> np.ndarray:
    """Token ids of `text` as int32 (long texts in parallel chunks; same ids as one call)."""
    ids = self._encode_all(self._pieces(text))
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    """`[encode(t) for t in texts]` in one parallel call (many short documents)."""
    pieces = [self._pieces(t) for t in texts]
    flat = iter(self._encode_all([c for p in pieces for c in p]))
    out = []
    for p in pieces:
      ids = [next(flat) for _ in p]
      out.append(np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32))
    return out

  def decode(self, ids) -> str:
    return self.hf.decode([int(i) for i in np.asarray(ids).reshape(-1)])


def special_tokens(hf: tokenizers.Tokenizer) -> dict[str, int]:
  """{content: id} of the special added tokens of `hf`."""
  return {t.content: i for i, t in hf.get_added_tokens_decoder().items() if t.special}


def find_bos_id(hf: tokenizers.Tokenizer, bos_token: str | None, source: str) -> int:
  """The id of the boundary token: the special token `bos_token`, else the first of
  BOS_TOKENS among the special tokens; a one-line ValueError naming `source` otherwise."""
  special = special_tokens(hf)
  names = sorted(special, key=special.get)
  have = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "none"
  if bos_token is not None:
    if bos_token not in special:
      raise ValueError(f"data.bos_token={bos_token!r} is not a special token of tokenizer "
                       f"{source} (its special tokens: {have})")
    return special[bos_token]
  found = next((t for t in BOS_TOKENS if t in special), None)
  if found is None:
    raise ValueError(f"tokenizer {source} has no document-boundary token: none of "
                     f"{', '.join(BOS_TOKENS)} is among its special tokens ({have}); name one "
                     "with data.bos_token (--bos_token), or use data.document_separator="
                     "'newline'")
  return special[found]


def boundary_tokenizer(tok: Tokenizer, bos_token: str | None = None) -> Tokenizer:
  """`tok` with its document-boundary token (`tok.bos_id`): byte 256, or a special token of a
  tokenizer.json (`bos_token`, else the first of BOS_TOKENS); see the module docstring."""
  if isinstance(tok, ByteTokenizer):
    if bos_token is not None:
      raise ValueError(f"data.bos_token={bos_token!r} names a token of a tokenizer.json; the "
                       f"byte tokenizer's boundary is id {BYTE_BOS_ID}")
    return ByteTokenizer(boundary=True)
  return tok.with_boundary(bos_token)


BPETokenizer = HFTokenizer  # its name from when only byte-level BPE files loaded


# ------------------------------------------------------------------------------------------
# SentencePiece models (a `.model` file), as parameter-golf trains and uses them.

SPM_SUFFIX = ".model"  # a SentencePiece model file
SPM_INSTALL = "pip install 'jaxgpt[sentencepiece]'"


def _sentencepiece():
  """The `sentencepiece` module (an optional dependency): a one-line error when missing."""
  try:
    import sentencepiece
  except ImportError:
    raise ValueError(f"SentencePiece tokenizers need the sentencepiece package ({SPM_INSTALL})"
                     ) from None
  return sentencepiece


def spm_piece_bytes(piece: str, is_byte: bool) -> int:
  """The bytes of text a normal or byte piece stands for: a byte-fallback piece <0xXX> is one
  byte, every "\u2581" one byte of space, the rest its UTF-8 length."""
  return 1 if is_byte else len(piece.replace(SPACE_MARK, " ").encode("utf-8"))


class SentencePieceTokenizer:
  """A SentencePiece model (`.model` file) loaded through the `sentencepiece` package.

  `token_bytes`: control, unknown and unused ids 0; byte-fallback pieces 1; others their
  UTF-8 length with "\u2581" as one space byte (as the metaspace kind). Trained with
  add_dummy_prefix=False (parameter-golf's setting, `train_spm`) every "\u2581" is a space of
  the normalized text; a model with a dummy prefix counts one byte more per encoded text.
  A model that normalizes (parameter-golf's nmt_nfkc: NFKC, whitespace runs and newlines
  collapsed to one space, leading and trailing whitespace dropped) is lossy: its tokens
  stand for the normalized text, and `lossy_reason` says so. `pg_tables` are parameter-golf's
  own byte tables (`val_bpb_pg`). The boundary token (`with_boundary`) is the model's BOS
  (id 1 with parameter-golf's settings); text never encodes to a control id.
  """
  name = "spm"
  kind = "sentencepiece"

  def __init__(self, proto: bytes, source: str = "<memory>"):
    sentencepiece = _sentencepiece()
    try:
      sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
    except (RuntimeError, TypeError):
      raise ValueError(f"tokenizer {source} is not a SentencePiece model (its bytes do not "
                       "parse as a SentencePiece ModelProto)") from None
    self.proto, self.source, self.sp = bytes(proto), source, sp
    self.vocab_size = int(sp.vocab_size())
    self.token_bytes = np.zeros(self.vocab_size, dtype=np.int32)
    for i in range(self.vocab_size):
      if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)):
        self.token_bytes[i] = spm_piece_bytes(sp.id_to_piece(i), sp.is_byte(i))
    self.bos_id = None

  def __getstate__(self):  # the processor does not pickle; its model bytes do
    return {k: v for k, v in self.__dict__.items() if k != "sp"}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self.sp = _sentencepiece().SentencePieceProcessor(model_proto=self.proto)

  @classmethod
  def from_file(cls, path: str | os.PathLike) -> "SentencePieceTokenizer":
    try:
      with open(os.path.expanduser(path), "rb") as f:
        proto = f.read()
    except OSError as e:
      raise ValueError(f"cannot read tokenizer {path}: {e.strerror}") from None
    return cls(proto, str(path))

  def save(self, path: str | os.PathLike) -> None:
    """Writes the model file (the serialized model proto) atomically."""
    files.atomic_write(path, self.proto)

  def with_boundary(self, bos_token: str | None = None) -> "SentencePieceTokenizer":
    """A copy whose `bos_id` is the control piece `bos_token`, else the model's BOS."""
    sp = self.sp
    if bos_token is not None:
      i = sp.piece_to_id(bos_token)
      if sp.id_to_piece(i) != bos_token or not sp.is_control(i):
        raise ValueError(f"data.bos_token={bos_token!r} is not a control piece of tokenizer "
                         f"{self.source} (its BOS is {sp.id_to_piece(max(sp.bos_id(), 0))!r})")
    elif sp.bos_id() < 0:
      raise ValueError(f"tokenizer {self.source} has no BOS (trained with bos_id=-1); name a "
                       "control piece with data.bos_token, or use data.document_separator="
                       "'newline'")
    out = copy.copy(self)
    out.bos_id = int(sp.bos_id() if bos_token is None else sp.piece_to_id(bos_token))
    out.bos_token = sp.id_to_piece(out.bos_id)
    return out

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self.sp.encode(text, out_type=int), dtype=np.int32)

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    return [np.asarray(ids, dtype=np.int32)
            for ids in self.sp.encode(list(texts), out_type=int)]

  def decode(self, ids) -> str:
    """The text of `ids` (control ids such as the BOS decode to nothing)."""
    return self.sp.decode([int(i) for i in np.asarray(ids).reshape(-1)])

  def pg_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """parameter-golf's byte tables (`build_sentencepiece_luts`): per id (base_bytes int16,
    has_leading_space bool, is_boundary bool). Control, unknown and unused ids are boundaries
    of 0 bytes; byte pieces 1 byte, no space; a normal piece's leading "\u2581" is the flag
    and the rest its UTF-8 length."""
    if getattr(self, "_pg_tables", None) is not None:
      return self._pg_tables
    sp, n = self.sp, self.vocab_size
    base = np.zeros(n, dtype=np.int16)
    space = np.zeros(n, dtype=bool)
    boundary = np.ones(n, dtype=bool)
    for i in range(n):
      if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
        continue
      boundary[i] = False
      if sp.is_byte(i):
        base[i] = 1
        continue
      piece = sp.id_to_piece(i)
      if piece.startswith(SPACE_MARK):
        space[i], piece = True, piece[1:]
      base[i] = len(piece.encode("utf-8"))
    self._pg_tables = (base, space, boundary)
    return self._pg_tables


def pg_bytes(tables, tokens_n: np.ndarray) -> int:
  """parameter-golf's byte count of the targets tokens_n[1:] (each after tokens_n[k - 1]):
  base_bytes[y] + (has_leading_space[y] and not is_boundary[x]). Ids past the tables count as
  boundaries of 0 bytes (its tables' padding to the model's vocabulary)."""
  base, space, boundary = tables
  n = len(base)
  x_n = np.asarray(tokens_n[:-1], dtype=np.int64)
  y_n = np.asarray(tokens_n[1:], dtype=np.int64)
  inside_x, inside_y = x_n < n, y_n < n
  x_n, y_n = np.where(inside_x, x_n, 0), np.where(inside_y, y_n, 0)
  after_text = inside_x & ~boundary[x_n]
  counted = base[y_n].astype(np.int64) + (space[y_n] & after_text)
  return int(np.sum(np.where(inside_y, counted, 0)))


SPM_NAME = re.compile(r"spm(\d+)")  # "spm1024": a SentencePiece BPE trained here


def is_tokenizer_file(name) -> bool:
  """Whether `data.tokenizer` names a file: a tokenizer.json or a SentencePiece `.model`."""
  return str(name).endswith((".json", SPM_SUFFIX))


# The built-in `data.tokenizer` names (the sources that accept a tokenizer.json take its path too;
# those that train their own tokenizer also "spm<V>", `jaxgpt.data.spm`).
NAMES = (ByteTokenizer.name, HFTokenizer.name)
# The file a prepared folder keeps its tokenizer in, by `tok.name` (meta.json's "tokenizer").
SAVED_FILES = {HFTokenizer.name: "tokenizer.json", SentencePieceTokenizer.name: "tokenizer.model"}


def saved_file(name: str) -> str | None:
  """The tokenizer file of a prepared folder whose meta.json says `tokenizer: name` (None for
  byte: nothing saved)."""
  return SAVED_FILES.get(name)


def load_saved(folder: str | os.PathLike, name: str, boundary: bool = False,
               bos_token: str | None = None) -> Tokenizer:
  """The tokenizer a prepared folder saved (`name` as meta.json's "tokenizer"), with its
  boundary token when `boundary`."""
  if name == ByteTokenizer.name:
    return ByteTokenizer(boundary=boundary)
  path = os.path.join(folder, SAVED_FILES[name])
  cls = SentencePieceTokenizer if name == SentencePieceTokenizer.name else HFTokenizer
  tok = cls.from_file(path)
  return tok.with_boundary(bos_token) if boundary else tok


def train_bpe(text: str | Iterable[str], vocab_size: int, boundary: bool = False
              ) -> HFTokenizer:
  """Trains a byte-level BPE of `vocab_size` ids on `text`, one string or an iterable of
  documents read once (deterministic for the same text). With `boundary`, one of the ids is
  the special token BOS_TOKEN, and the tokenizer's `bos_id` is it."""
  if not MIN_BPE_VOCAB <= vocab_size <= MAX_BPE_VOCAB:
    raise ValueError(f"data.bpe_vocab_size={vocab_size} must lie in "
                     f"[{MIN_BPE_VOCAB}, {MAX_BPE_VOCAB}]")
  hf = tokenizers.Tokenizer(models.BPE())
  hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  hf.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                special_tokens=[BOS_TOKEN] if boundary else [],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  texts = (text,) if isinstance(text, str) else text
  hf.train_from_iterator((c for t in texts for c in _chunks(t)), trainer=trainer)
  tok = HFTokenizer(hf)
  return tok.with_boundary(BOS_TOKEN) if boundary else tok


def load_tokenizer(name_or_path: str) -> Tokenizer:
  """`"byte"`, a SentencePiece `.model` path, or the tokenizer of a `tokenizer.json` path
  (one of KINDS)."""
  if name_or_path == "byte":
    return ByteTokenizer()
  if str(name_or_path).endswith(SPM_SUFFIX):
    return SentencePieceTokenizer.from_file(name_or_path)
  return HFTokenizer.from_file(name_or_path)


# ------------------------------------------------------------------------------------------
# Lossy tokenizers.

def _first_difference(a: str, b: str) -> int:
  return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def lossy_reason(tok: Tokenizer, sample: str) -> str | None:
  """Why `tok` does not stand for the raw text of `sample` (None when it does): either
  decode(encode(sample)) != sample (normalization, dropped whitespace, unknown tokens), or
  its tokens' byte counts do not add up to the sample's UTF-8 bytes."""
  ids = tok.encode(sample)
  back = tok.decode(ids)
  if back != sample:
    i = _first_difference(sample, back)
    return (f"decode(encode(text)) != text: at character {i}, {sample[i:i + 12]!r} comes "
            f"back as {back[i:i + 12]!r}")
  counted, real = int(tok.token_bytes[ids].sum()), len(sample.encode("utf-8"))
  if counted != real:
    return f"its tokens stand for {counted:,} bytes of a text of {real:,} bytes"
  return None
