"""lm-evaluation-harness's own command line with jaxgpt's model registered (`--model jaxgpt`):

  python -m jaxgpt.lm_eval --model_args workdir=DIR --tasks TASKS [any lm-eval run flag]

TASKS: lm-eval task names, task YAML paths (e.g. a local JSON dataset: `dataset_path: json`,
`dataset_kwargs: {data_files: ...}`) or folders of them, comma-separated. The model reads DIR's
config.json, latest checkpoint and tokenizer. `--model` defaults to jaxgpt; every other flag is
lm-eval's (`--batch_size`, `--limit`, `--num_fewshot`, `--output_path`, `--log_samples`, ...),
and `python -m jaxgpt.lm_eval ls tasks` lists the tasks. An unknown task, a workdir without a
checkpoint or a bad model argument is one line `error: ...` and exit code 2.
"""

from __future__ import annotations

import sys
from typing import Sequence

from jaxgpt import cli
from jaxgpt.errors import ConfigError

SUBCOMMANDS = ("run", "ls", "validate")  # lm-eval's; without one, lm-eval runs "run"


def lm_eval_argv(args: Sequence[str]) -> list[str]:
  """lm-eval's argv for our arguments: the "run" subcommand with `--model jaxgpt` unless a
  model is named; other subcommands as given."""
  args = list(args)
  if args and args[0] in SUBCOMMANDS[1:]:
    return ["lm-eval", *args]
  if args and args[0] == "run":
    args = args[1:]
  if not any(a == "--model" or a.startswith("--model=") for a in args):
    args = ["--model", "jaxgpt", *args]
  return ["lm-eval", "run", *args]


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv if argv is None else argv)
  try:
    from lm_eval.__main__ import cli_evaluate
  except ImportError:
    cli.fail("python -m jaxgpt.lm_eval needs lm-eval, which is not installed: "
             "pip install 'jaxgpt[lm_eval]'")
  # registers the "jaxgpt" model class with lm-eval (imports JAX and the trainer)
  from jaxgpt.lm_eval import adapter  # noqa: F401
  sys.argv = lm_eval_argv(argv[1:])
  try:
    cli_evaluate()
  except (ConfigError, FileNotFoundError, ValueError) as e:  # lm-eval's are ValueErrors
    cli.fail(" ".join(str(e).split()) or type(e).__name__)
  return 0


if __name__ == "__main__":
  sys.exit(main())
