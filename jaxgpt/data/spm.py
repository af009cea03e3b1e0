"""SentencePiece BPE tokenizers trained with parameter-golf's settings.

    python -m jaxgpt.data.spm --input 'train/*.txt' --vocab_size 1024 --output tok.model
    # then: --config.data.tokenizer=tok.model (sources text, tfds, shards), or
    python -m jaxgpt.data.prepare --input ... --tokenizer spm1024 --output DIR  # train split

`train_spm` trains a SentencePiece BPE as parameter-golf's data export does
(`data/download_hf_docs_and_tokenize.py` of openai/parameter-golf): model type BPE,
`byte_fallback` (every byte has a piece `<0xXX>`, so nothing maps to the unknown id),
`split_digits`, normalization `nmt_nfkc` (NFKC; whitespace runs, tabs and newlines become one
space; leading and trailing whitespace is dropped), no dummy prefix, character coverage 0.999,
a soft vocabulary limit, and the ids pad 0, bos 1, eos 2, unk 3. The vocabulary is 1024 by
default (parameter-golf's `sp1024`).

One difference, in what the trainer reads: SentencePiece skips every training sentence longer
than `max_sentence_length` (4192 bytes) without a word, so parameter-golf's trainer, which is
given whole documents, learns only from documents up to 4192 bytes. Here each document is cut
into its non-empty lines (stripped, NUL replaced by a space), which keeps almost all of a
corpus such as the Shakespeare (a whole work is 100 kB) and changes nothing for text whose
documents are single lines. Newlines become spaces under nmt_nfkc anyway, so a line break
inside a document could only have joined two pieces across it.

Deterministic given its input: the trainer reads every sentence (no sampling:
`input_sentence_size` 0) and its BPE merges do not depend on thread timing (the tests train
twice and compare the model bytes). The model is written in memory (`model_writer`), so no
path ends up in it.

`data.tokenizer = "spm<V>"` (e.g. "spm1024") trains one of V ids on the train split where a
source trains its own tokenizer (the embedded corpus, `text`, `tfds`, `python -m
jaxgpt.data.prepare --tokenizer spm1024`).
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Iterable, Iterator, NoReturn

from jaxgpt.data import corpus
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.errors import ConfigError

MIN_VOCAB = 260 + 1  # 4 special ids + 256 byte pieces, and at least one more piece
MAX_VOCAB = 1 << 16  # ids of uint16 shards, as parameter-golf writes them
DEFAULT_VOCAB = 1024
# parameter-golf's trainer arguments (besides the input, the vocabulary size and the output).
SETTINGS = dict(model_type="bpe", character_coverage=0.999, byte_fallback=True,
                split_digits=True, normalization_rule_name="nmt_nfkc", add_dummy_prefix=False,
                pad_id=0, bos_id=1, eos_id=2, unk_id=3, hard_vocab_limit=False)


def vocab_of(name: str) -> int | None:
  """V of a tokenizer name "spm<V>" (e.g. "spm1024"), None for any other name."""
  match = tokenizer_lib.SPM_NAME.fullmatch(str(name))
  return int(match.group(1)) if match else None


def check_name(key: str, name: str) -> int:
  """V of "spm<V>" within [MIN_VOCAB, MAX_VOCAB]; else one line naming `key`."""
  vocab = vocab_of(name)
  if vocab is None or not MIN_VOCAB <= vocab <= MAX_VOCAB:
    raise ConfigError(f"{key}={name!r}: a SentencePiece BPE trained here is 'spm<V>' with V in "
                      f"[{MIN_VOCAB}, {MAX_VOCAB}] ids (e.g. 'spm1024')")
  return vocab


def sentences(texts: Iterable[str], max_bytes: int | None = None) -> Iterator[str]:
  """The non-empty lines of `texts` (stripped, NUL as a space), until `max_bytes` of them."""
  seen = 0
  for text in texts:
    for line in text.replace("\x00", " ").split("\n"):
      line = line.strip()
      if line:
        yield line
        seen += len(line.encode("utf-8"))
        if max_bytes is not None and seen >= max_bytes:
          return


def train_spm(texts: str | Iterable[str], vocab_size: int = DEFAULT_VOCAB,
              boundary: bool = False, max_bytes: int | None = None
              ) -> tokenizer_lib.SentencePieceTokenizer:
  """A SentencePiece BPE of (at most) `vocab_size` ids trained with parameter-golf's settings
  on `texts` (one string or documents, read once; up to `max_bytes` of their lines). With
  `boundary`, its `bos_id` is the BOS (id 1)."""
  if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
    raise ValueError(f"a SentencePiece BPE needs a vocabulary in [{MIN_VOCAB}, {MAX_VOCAB}] "
                     f"(4 special ids, 256 byte pieces, then merges), got {vocab_size}")
  sentencepiece = tokenizer_lib._sentencepiece()
  texts = (texts,) if isinstance(texts, str) else texts
  lines = sentences(texts, max_bytes)
  writer = io.BytesIO()
  try:
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=lines, model_writer=writer, vocab_size=vocab_size, minloglevel=2,
        **SETTINGS)
  except RuntimeError as e:
    first = (str(e).strip().splitlines() or ["failed"])[0]
    raise ValueError(f"training a {vocab_size}-id SentencePiece BPE failed: {first}") from None
  tok = tokenizer_lib.SentencePieceTokenizer(writer.getvalue(), f"<spm{vocab_size}>")
  return tok.with_boundary() if boundary else tok


# ------------------------------------------------------------------------------------------
# The command: train a .model file on the documents of some files.

class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parser() -> argparse.ArgumentParser:
  p = _Parser(prog="python -m jaxgpt.data.spm", description=__doc__,
              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--input", action="append", required=True, help="glob of parquet, "
                 "jsonl(.gz/.zst) or text files, one document each (repeatable)")
  p.add_argument("--text_field", default="text", help="the column or JSON field of the text")
  p.add_argument("--vocab_size", type=int, default=DEFAULT_VOCAB, help="ids (a soft limit)")
  p.add_argument("--max_bytes", type=int, help="train on the first this many bytes of lines")
  p.add_argument("--output", required=True, help="the .model file to write")
  return p


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  try:
    if not args.output.endswith(tokenizer_lib.SPM_SUFFIX):
      raise ConfigError(f"--output={args.output!r} must end in {tokenizer_lib.SPM_SUFFIX}")
    source = corpus.Source(text_field=args.text_field, files=corpus.input_files(args.input))
    docs = (r for r in corpus.records(source) if isinstance(r, str))
    tok = train_spm(docs, args.vocab_size, max_bytes=args.max_bytes)
    tok.save(args.output)
  except ValueError as e:  # ConfigError, CorpusError, a failed training
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"{args.output}: SentencePiece BPE, {tok.vocab_size} ids (bos {tok.sp.bos_id()})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
