"""JAX key paths as readable strings: (blocks, attn, qkv, kernel) -> "blocks/attn/qkv/kernel"."""

from __future__ import annotations

from typing import Any, Sequence


def key_str(key: Any) -> str:
  """One path entry (DictKey, GetAttrKey, SequenceKey, FlattenedIndexKey or a plain value)."""
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_str(path: Sequence[Any]) -> str:
  """A jax key path as "a/b/c"."""
  return "/".join(key_str(k) for k in path)
