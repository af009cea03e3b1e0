"""The tokenizer files of a checkpoint folder.

jaxgpt's byte tokenizer (ids = UTF-8 byte values) is written as a `tokenizers` ByteLevel BPE
with no merges whose vocabulary maps GPT-2's byte-to-unicode character of byte b to id b, so
`Tokenizer.from_file(...).encode(text).ids` are the text's bytes; with a boundary token,
"<|endoftext|>" is special id 256, as in jaxgpt. A tokenizer.json tokenizer is written as
jaxgpt encodes with it. Beside tokenizer.json: tokenizer_config.json (the fast tokenizer class,
the boundary token as bos and eos, the length trained at).
"""

from __future__ import annotations

import json
from typing import Any

import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from jaxgpt.data import tokenizer as tokenizer_lib

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def byte_tokenizer(boundary: bool = False) -> tokenizers.Tokenizer:
  """The byte tokenizer as a ByteLevel BPE: id b is byte b (plus special id 256, the boundary
  token, with `boundary`)."""
  vocab = dict(tokenizer_lib.unicode_to_byte())  # GPT-2's character for byte b -> b
  hf = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
  hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  hf.decoder = decoders.ByteLevel()
  if boundary:
    hf.add_special_tokens([tokenizer_lib.BOS_TOKEN])
    assert hf.token_to_id(tokenizer_lib.BOS_TOKEN) == tokenizer_lib.BYTE_BOS_ID
  return hf


def is_byte_tokenizer(spec: dict) -> bool:
  """Whether a parsed tokenizer.json is jaxgpt's byte tokenizer (`byte_tokenizer`, with or
  without its boundary token): a merge-free BPE whose ids are the byte values."""
  model = spec.get("model") or {}
  if model.get("type") != "BPE" or model.get("merges"):
    return False
  if model.get("vocab") != dict(tokenizer_lib.unicode_to_byte()):
    return False
  added = {t["id"]: t["content"] for t in spec.get("added_tokens") or []}
  return added in ({}, {tokenizer_lib.BYTE_BOS_ID: tokenizer_lib.BOS_TOKEN})


def tokenizer_json(tok: Any) -> str | None:
  """tokenizer.json text of a jaxgpt tokenizer (None: raw shards have none)."""
  if tok is None:
    return None
  if isinstance(tok, tokenizer_lib.ByteTokenizer):
    return byte_tokenizer(tok.bos_id is not None).to_str(pretty=True)
  return tok.hf.to_str(pretty=True)


def boundary_token(tok: Any) -> str | None:
  """The text of the tokenizer's boundary token, or None."""
  if tok is None or tok.bos_id is None:
    return None
  if isinstance(tok, tokenizer_lib.ByteTokenizer):
    return tokenizer_lib.BOS_TOKEN
  return tok.hf.id_to_token(tok.bos_id)


def tokenizer_files(tok: Any, max_length: int) -> dict[str, str]:
  """{file name: text}: tokenizer.json and tokenizer_config.json ({} without a tokenizer)."""
  text = tokenizer_json(tok)
  if text is None:
    return {}
  bos = boundary_token(tok)
  config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
            "clean_up_tokenization_spaces": False, "add_bos_token": False,
            "add_eos_token": False}
  if bos is not None:
    config.update(bos_token=bos, eos_token=bos)
  return {TOKENIZER_JSON: text, TOKENIZER_CONFIG: json.dumps(config, indent=2) + "\n"}
