"""Command-line helpers shared by the entry points: `jaxgpt.main`, `jaxgpt.sweep`,
`jaxgpt.report` and `scripts/*.py` all parse absl flags the same way.

A flag error (an unknown or malformed flag, a value out of range), a usage error (a missing or
unexpected argument) and a config error (`jaxgpt.errors.ConfigError`: an unknown key, a bad
value; a config file that does not exist, is a directory or has no `get_config`) are one line
on stderr, `error: ...`, and exit code 2 — never a traceback or a page of usage text. `--help`
prints the entry point's docstring and its flags.

A script defines its flags at module level and ends with

  if __name__ == "__main__":
    cli.run(main)

where `main(argv)` gets the positional arguments left after the flags (`argv[0]` is the
program) and returns the exit code.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Mapping, NoReturn, Sequence

from absl import app, flags, logging

from jaxgpt.errors import ConfigError, ConfigFileError


def fail(message: str, code: int = 2) -> NoReturn:
  """Prints `error: message` on stderr and exits with `code`."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def flags_parser(unknown_key_message: Callable[[Exception, list[str]], str]
                 ) -> Callable[[list[str]], list[str]]:
  """absl flag parsing that turns a misspelt `--config.<key>` override (and any other flag
  error) into a one-line message and exit code 2, instead of a traceback.
  `unknown_key_message(error, config_overrides)` words the unknown-key case."""

  def parse(argv):
    where = flag_value(argv, "config")
    path = None if where is None else where.partition(":")[0]
    if path is not None:
      check_config_file(path)
    try:
      return flags.FLAGS(argv)
    except (KeyError, AttributeError) as e:
      if isinstance(e, AttributeError) and e.name == "get_config":
        fail(f"config file {path} has no get_config(variants) function")
      bad = [a for a in argv[1:] if a.startswith("--config.")]
      fail(unknown_key_message(e, bad))
    except flags.Error as e:
      fail(_without_traceback(str(e)))
    except Exception as e:  # noqa: BLE001 - the config file itself raised while loading
      text = " ".join(str(e).split()) or "(no message)"
      fail(f"config file {where} failed to load: {type(e).__name__}: {text}")

  return parse


def flag_value(argv: Sequence[str], name: str) -> str | None:
  """The value of flag `--name` in `argv` (`--name=V`, `--name V`, one dash too), the last one
  given; None if absent. Arguments after `--` are not flags."""
  value = None
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == "--":
      break
    for prefix in (f"--{name}", f"-{name}"):
      if arg.startswith(prefix + "="):
        value = arg[len(prefix) + 1:]
      elif arg == prefix and i + 1 < len(args):
        value = args[i + 1]
  return value


def check_config_file(path: str) -> None:
  """`error: config file PATH does not exist` (or is a directory) and exit 2, before absl's
  config flag reads `path` (as given, from the working directory): ml_collections would
  otherwise defer the error to the config's first use, as a 20-line traceback."""
  from jaxgpt import config as config_lib  # imports jax: see load_config
  try:
    config_lib.check_file(path, resolve=False)
  except ConfigError as e:
    fail(str(e))


def _without_traceback(text: str) -> str:
  """ml_collections re-raises a config file's ValueError / TypeError (an unknown variant, say)
  with the whole traceback in its message; keep the flag and the traceback's last line."""
  marker = ": Error whilst parsing config file"
  if marker not in text:
    return text
  last = [line for line in text.splitlines() if line.strip()][-1]
  name, _, message = last.partition(": ")
  return f"{text.split(marker, 1)[0]}: {name.rsplit('.', 1)[-1]}: {message}"


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing for the entry points without config overrides: a flag error is one line
  `error: ...` and exit code 2. Returns `argv` without the flags (everything after `--` too)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))


def run(main: Callable[[list[str]], int | None],
        parser: Callable[[list[str]], list[str]] = parse_flags) -> NoReturn:
  """`absl.app.run(main)` with one-line errors: flag errors (from `parser`), and an
  `app.UsageError` or `ConfigError` raised by `main`, print `error: ...` and exit 2. absl logs
  at WARNING unless `--verbosity` is given (Orbax logs every checkpoint save at INFO)."""

  def wrapped(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    try:
      return main(argv)
    except (app.UsageError, ConfigError) as e:
      fail(str(e))

  app.run(wrapped, flags_parser=parser)


def no_arguments(argv: Sequence[str]) -> None:
  """A usage error if any positional argument is left after the flags."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (this command takes "
                         "flags only; see --help)")


class _IntListParser(flags.ListParser):
  """Comma-separated integers: `--ks=1,2,4` -> [1, 2, 4]."""

  def parse(self, argument: Any) -> list[int]:
    items = super().parse(argument)
    try:
      return [int(x) for x in items]
    except (TypeError, ValueError):
      raise ValueError(f"expected comma-separated integers, got {argument!r}") from None

  def flag_type(self) -> str:
    return "a comma separated list of integers"


def define_int_list(name: str, default: Sequence[int] | None, help: str, **kwargs
                    ) -> flags.FlagHolder:
  """`flags.DEFINE_list` whose items are integers (`--seeds=0,1`)."""
  return flags.DEFINE(_IntListParser(), name, None if default is None else list(default), help,
                      serializer=flags.CsvListSerializer(","), **kwargs)


def load_config(arg: str, overrides: Mapping[str, Any] | None = None):
  """`jaxgpt.config.load(arg, overrides)` ("configs/gpt.py:cpu", {"train.steps": 10}); a config
  error (missing file, unknown variant, unknown key, a value of the wrong type) is one line
  `error: ...` and exit 2."""
  # Imported here, not at the top: jaxgpt.config imports jax (through its registries), and
  # this module is imported before jax where XLA_FLAGS is set first (scripts/bench_sharding.py).
  from jaxgpt import config as config_lib
  try:
    return config_lib.load(arg, overrides)
  except ConfigFileError as e:  # the message names the file
    fail(str(e))
  except (ValueError, TypeError) as e:  # ConfigError is a ValueError; ConfigDict raises TypeError
    fail(f"config {arg}: {e}")
