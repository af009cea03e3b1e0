"""`python -m jaxgpt.export ARTIFACT`: the round-trip evaluation, in a fresh process.

Reads only the artifact file (and the data's validation split): rebuilds the model from the
config stored in it, dequantizes its parameters and scores the whole validation split. Prints
one JSON line: val_loss_, val_bpb_, val_acc_, val_tokens_, val_bytes_roundtrip and
`code_files`, the jaxgpt source files that loading and running the model imported (the code
that `artifact_bytes` counts), recorded before the evaluation machinery is imported.
"""

from __future__ import annotations

import json
import os
import sys

# absl, not jaxgpt.cli: every jaxgpt module this process imports counts as artifact code.
from absl import app, flags


def code_files() -> list[str]:
  """jaxgpt source files imported so far, relative to the directory holding the package."""
  import jaxgpt  # already imported (this module is in it); here only to find its directory
  pkg = os.path.dirname(os.path.abspath(jaxgpt.__file__))
  root = os.path.dirname(pkg)
  files = {os.path.abspath(m.__file__) for m in list(sys.modules.values())
           if getattr(m, "__file__", None) and os.path.abspath(m.__file__).startswith(pkg + os.sep)}
  return sorted(os.path.relpath(f, root) for f in files)


def roundtrip(path: str) -> dict:
  # Imported in two stages, not at the top: `code_files()` records what loading and running
  # the model imports (artifact_bytes counts it), before the evaluation machinery comes in.
  from jaxgpt.export import artifact
  model, params, meta = artifact.load_model(path)
  files = code_files()

  import jax
  import jax.numpy as jnp
  from ml_collections import config_dict

  # The evaluation machinery, after code_files(): not part of the artifact's code.
  from jaxgpt.train import evaluate, setup, step
  config = config_dict.ConfigDict(meta["config"])
  run = setup.build(config)
  if run.vocab_size != meta["vocab_size"]:
    raise ValueError(f"artifact vocab_size {meta['vocab_size']} != data vocabulary "
                     f"{run.vocab_size}")
  tb = setup.token_bytes_array(run.spec, run.vocab_size)
  eval_fn = jax.jit(step.make_eval_step(model.apply, None if tb is None else jnp.asarray(tb)))
  with run.context():
    params = jax.device_put(params, run.state_shardings.params)
    ev = evaluate.evaluate(run, eval_fn, params, "val", None)
  return {**{f"{k}_roundtrip": v for k, v in ev.items()}, "code_files": files}


def _error(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flags (this entry point defines none of its own); an error is one line, exit 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _error(str(e))


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    _error("give one artifact: python -m jaxgpt.export ARTIFACT")
  if not os.path.isfile(argv[1]):
    _error(f"artifact {argv[1]} " + ("is a directory, not an artifact file"
                                     if os.path.isdir(argv[1]) else "does not exist"))
  print(json.dumps(roundtrip(argv[1])))
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
