"""The flags the benchmark scripts share, defined by the script that calls `define` (never at
import: one process may import several benchmarks), and `--set KEY=VALUE` config overrides read
as the types of the config's fields.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from absl import app, flags

from jaxgpt import cli
from jaxgpt import config as config_lib

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class Flags(NamedTuple):
  """The holders `define` made (None for a flag it was not asked for)."""
  config: flags.FlagHolder
  out: flags.FlagHolder
  smoke: flags.FlagHolder
  steps: flags.FlagHolder | None
  sets: flags.FlagHolder | None


def define(config: str, smoke_help: str, steps: int | None = None,
           steps_help: str = "Timed training steps.", sets: bool = False) -> Flags:
  """Defines --config (default `config`), --out, --smoke and, when asked, --steps (default
  `steps`) and the repeatable --set KEY=VALUE."""
  return Flags(
      config=flags.DEFINE_string("config", config, "Config file[:variants]."),
      out=flags.DEFINE_string("out", None, "JSON output path."),
      smoke=flags.DEFINE_bool("smoke", False, smoke_help),
      steps=(None if steps is None else
             flags.DEFINE_integer("steps", steps, steps_help, lower_bound=1)),
      sets=(flags.DEFINE_multi_string("set", [], "Config override KEY=VALUE, e.g. "
                                      "optimizer.lazy_proj_freq=1") if sets else None))


def parse_value(text: str, kind: type | None) -> Any:
  """`text` as `kind` (the config field's type); "None" clears the field."""
  if text in ("None", "none", "null"):
    return None
  if kind is bool:
    if text.lower() not in _BOOLS:
      raise ValueError(f"{text!r} is not a bool (true or false)")
    return _BOOLS[text.lower()]
  return text if kind is None else kind(text)


def parse_sets(config_arg: str, items: Sequence[str]) -> dict[str, Any]:
  """`KEY=VALUE` strings -> {key: value}, each value read as the type of the config's field."""
  base = cli.load_config(config_arg)
  out = {}
  for item in items:
    key, sep, text = item.partition("=")
    if not sep:
      raise app.UsageError(f"--set {item!r}: expected KEY=VALUE")
    try:
      current = config_lib.get_key(base, key)
    except KeyError:
      raise app.UsageError(f"--set {item!r}: unknown config key {key!r}") from None
    section, _, field = key.rpartition(".")
    parent = config_lib.get_key(base, section) if section else base
    kind = type(current) if current is not None else parent.get_ref(field).get_type()
    try:
      out[key] = parse_value(text, kind)
    except ValueError as e:
      raise app.UsageError(f"--set {item!r}: {e}") from None
  return out
