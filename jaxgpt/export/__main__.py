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


def code_files() -> list[str]:
  """jaxgpt source files imported so far, relative to the directory holding the package."""
  import jaxgpt
  pkg = os.path.dirname(os.path.abspath(jaxgpt.__file__))
  root = os.path.dirname(pkg)
  files = {os.path.abspath(m.__file__) for m in list(sys.modules.values())
           if getattr(m, "__file__", None) and os.path.abspath(m.__file__).startswith(pkg + os.sep)}
  return sorted(os.path.relpath(f, root) for f in files)


def roundtrip(path: str) -> dict:
  from jaxgpt.export import artifact
  model, params, meta = artifact.load_model(path)
  files = code_files()

  import jax
  import jax.numpy as jnp
  from ml_collections import config_dict

  from jaxgpt.train import loop, setup, step
  config = config_dict.ConfigDict(meta["config"])
  run = setup.build(config)
  if run.vocab_size != meta["vocab_size"]:
    raise ValueError(f"artifact vocab_size {meta['vocab_size']} != data vocabulary "
                     f"{run.vocab_size}")
  tb = setup.token_bytes_array(run.spec, run.vocab_size)
  eval_fn = jax.jit(step.make_eval_step(model.apply, None if tb is None else jnp.asarray(tb)))
  with run.context():
    params = jax.device_put(params, run.state_shardings.params)
    ev = loop.evaluate(run, eval_fn, params, "val", None)
  return {**{f"{k}_roundtrip": v for k, v in ev.items()}, "code_files": files}


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print("usage: python -m jaxgpt.export ARTIFACT", file=sys.stderr)
    return 2
  print(json.dumps(roundtrip(argv[1])))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
