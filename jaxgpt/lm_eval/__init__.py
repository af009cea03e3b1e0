"""lm-evaluation-harness for jaxgpt models (the `lm_eval` extra): `adapter` (the `jaxgpt` model
class), `hook` (`eval.tasks` at the end of training), `python -m jaxgpt.lm_eval` (lm-eval's
command line with `--model jaxgpt`). This package's `__init__` imports nothing, so importing
`jaxgpt.lm_eval.hook` does not load lm-eval."""
