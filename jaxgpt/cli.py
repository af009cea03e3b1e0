"""Command-line helpers shared by the entry points (`jaxgpt.main`, `jaxgpt.sweep`)."""

from __future__ import annotations

import sys
from typing import Callable

from absl import flags


def flags_parser(unknown_key_message: Callable[[Exception, list[str]], str]
                 ) -> Callable[[list[str]], list[str]]:
  """absl flag parsing that turns a misspelt `--config.<key>` override (and any other flag
  error) into a one-line message and exit code 2, instead of a traceback.
  `unknown_key_message(error, config_overrides)` words the unknown-key case."""

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except (KeyError, AttributeError) as e:
      bad = [a for a in argv[1:] if a.startswith("--config.")]
      print(f"error: {unknown_key_message(e, bad)}", file=sys.stderr)
      sys.exit(2)
    except flags.Error as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  return parse
