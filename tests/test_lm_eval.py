"""lm-evaluation-harness on a jaxgpt checkpoint, offline, on small tasks this test writes as
local JSON with task YAMLs (`dataset_path: json`): the `jaxgpt` model's loglikelihood,
rolling loglikelihood and generation against the model's own float64 log-probabilities and
greedy decoding, jaxgpt's loss on the same text, `eval.tasks` at the end of training, lm-eval's
own command line (`python -m jaxgpt.lm_eval`), and one-line errors."""

import glob
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from jaxgpt.errors import ConfigError  # noqa: E402
from jaxgpt.lm_eval import adapter, hook  # noqa: E402  (hook: registers the run hook)
from jaxgpt.train import run as train_run  # noqa: E402
from jaxgpt.train import step as step_lib  # noqa: E402
from tests.helpers import load_config  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
MC_DOCS = [
    {"context": "ROMEO: I love", "choices": [" thee", " xqz"], "label": 0},
    {"context": "JULIET: O Romeo, Romeo! wherefore art thou", "choices": [" Romeo", " 9"],
     "label": 0},
    {"context": "To be, or not to be: that is the", "choices": [" question", " qqqq"],
     "label": 1},
]
ROLL_DOCS = [{"text": "First Citizen:\nBefore we proceed any further, hear me speak. " * 2},
             {"text": "Speak."}]
GEN_DOCS = [{"context": "KING HENRY:\nWhat", "answer": "is"}]
MC_YAML = """task: jaxgpt_toy_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
"""
ROLL_YAML = """task: jaxgpt_toy_roll
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: bits_per_byte
"""
GEN_YAML = """task: jaxgpt_toy_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{context}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
"""
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}  # local JSON needs no hub


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> dict:
  d = tmp_path_factory.mktemp("tasks")
  out = {}
  for name, docs, yaml in (("mc", MC_DOCS, MC_YAML), ("roll", ROLL_DOCS, ROLL_YAML),
                           ("gen", GEN_DOCS, GEN_YAML)):
    data = d / f"{name}.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    (d / f"{name}.yaml").write_text(yaml.format(data=data))
    out[name] = str(d / f"{name}.yaml")
  return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tasks):
  """A gpt:test run whose end-of-training hook runs the multiple-choice task."""
  workdir = str(tmp_path_factory.mktemp("run"))
  config = load_config("gpt", "test", train__final_eval_tokens=4096,
                       eval__tasks=(tasks["mc"],))
  summary = train_run.train_and_evaluate(config, workdir)
  return workdir, summary


@pytest.fixture(scope="module")
def lm(trained):
  return adapter.JaxgptLM(workdir=trained[0], batch_size=3)


def _logits(lm, tokens: list[int]) -> np.ndarray:
  """float64 logits [len(tokens), V] of the model on `tokens` (padded on the right to seq_len:
  one compilation; a causal model's logits before the padding do not see it)."""
  if not hasattr(lm, "_test_apply"):
    lm._test_apply = jax.jit(lambda p, x: lm.run.model.apply({"params": p}, x))
  padded = np.zeros((1, lm.seq_len), np.int32)
  padded[0, :len(tokens)] = tokens
  with lm.run.context():
    out = lm._test_apply(lm.params, jnp.asarray(padded))
  return np.asarray(out[0, :len(tokens)], np.float64)


def _logprobs(lm, tokens: list[int]) -> np.ndarray:
  """float64 log p(tokens[i+1] | tokens[:i+1]) straight from the model's logits."""
  logits = _logits(lm, tokens[:-1])
  top = logits.max(-1, keepdims=True)
  logz = np.log(np.exp(logits - top).sum(-1)) + top[:, 0]
  return logits[np.arange(len(tokens) - 1), tokens[1:]] - logz


def _direct(lm, context: str, continuation: str) -> tuple[float, bool]:
  """The continuation's log-probability and greedy match, by the model alone (byte tokens:
  the text's UTF-8 bytes; an empty context is the newline prefix; as in lm-eval, a context's
  trailing spaces belong to the continuation)."""
  n = len(context) - len(context.rstrip())
  if n:
    context, continuation = context[:-n], context[-n:] + continuation
  ctx = list(context.encode()) or [ord("\n")]
  cont = list(continuation.encode())
  tokens = (ctx + cont)[-(lm.seq_len + 1):]
  lp = _logprobs(lm, tokens)[-len(cont):]
  greedy = np.argmax(_logits(lm, tokens[:-1]), -1)[-len(cont):]
  return float(lp.sum()), bool(np.all(greedy == np.asarray(tokens[-len(cont):])))


def _instances(kind, args_list):
  return [Instance(kind, doc={}, arguments=args, idx=0) for args in args_list]


def test_loglikelihood_matches_the_models_own_log_probabilities(lm):
  pairs = [("ROMEO: I love", " thee"), ("To be, or not to be: that is the ", "question"),
           ("", "Speak."), ("x" * 50 + "KING: my lord", ", the end")]  # the last one truncated
  got = lm.loglikelihood(_instances("loglikelihood", pairs))
  for (ctx, cont), (ll, greedy) in zip(pairs, got):
    want_ll, want_greedy = _direct(lm, ctx, cont)
    np.testing.assert_allclose(ll, want_ll, rtol=1e-5, atol=1e-5)
    assert greedy == want_greedy
  # The same number is jaxgpt's own loss (the eval step's summed NLL) on the continuation.
  ctx, cont = list(b"ROMEO: I love"), list(b" thee")
  tokens = ctx + cont
  batch = {"inputs": jnp.asarray([tokens[:-1]]), "targets": jnp.asarray([tokens[1:]]),
           "weights": jnp.asarray([[0.0] * (len(ctx) - 1) + [1.0] * len(cont)])}
  with lm.run.context():
    sums = step_lib.make_eval_step(lm.run.model.apply, None)(lm.params, batch)
  np.testing.assert_allclose(-float(sums["loss_sum"]), got[0][0], rtol=1e-5)


def test_rolling_loglikelihood_scores_every_token_once(lm):
  text = ROLL_DOCS[0]["text"]
  [got] = lm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(text,)]))
  # Windows of seq_len predictions: the first from the newline prefix, each next one from the
  # seq_len tokens before it; the last (partial) window keeps a full seq_len of context.
  tokens, t = list(text.encode()), lm.seq_len
  stream = [ord("\n")] + tokens
  want = 0.0
  for start in range(0, len(tokens), t):
    end = min(start + t, len(tokens))
    lo = max(0, end - t)
    want += _logprobs(lm, stream[lo:end + 1])[start - lo:].sum()
  assert len(tokens) > 2 * t
  np.testing.assert_allclose(got, want, rtol=1e-5)
  [short] = lm.loglikelihood_rolling(_instances("loglikelihood_rolling", [("Speak.",)]))
  np.testing.assert_allclose(short, _direct(lm, "", "Speak.")[0], rtol=1e-5)


def test_generate_until_is_greedy_decoding_cut_at_the_stop(lm):
  context = GEN_DOCS[0]["context"]
  [got] = lm.generate_until(_instances("generate_until", [(context, {"until": ["e"],
                                                                     "max_gen_toks": 6})]))
  tokens = list(context.encode())
  for _ in range(6):
    tokens.append(int(np.argmax(_logits(lm, tokens)[-1])))
  text = bytes(tokens[len(context.encode()):]).decode("utf-8", errors="replace")
  assert got == text.split("e")[0]


def test_eval_tasks_put_their_scores_in_the_summary(trained, lm):
  workdir, summary = trained
  on_disk = json.load(open(os.path.join(workdir, "summary.json")))
  acc = summary["lm_eval/jaxgpt_toy_mc/acc"]
  assert on_disk["lm_eval/jaxgpt_toy_mc/acc"] == acc
  correct = []
  for doc in MC_DOCS:
    lls = [_direct(lm, doc["context"], c)[0] for c in doc["choices"]]
    correct.append(int(np.argmax(lls)) == doc["label"])
  assert acc == pytest.approx(np.mean(correct))
  # lm-eval's parts used here run without PyTorch (nor transformers)
  assert not {m.split(".")[0] for m in sys.modules} & {"torch", "transformers"}


def _cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), **OFFLINE)
  return subprocess.run([sys.executable, "-m", "jaxgpt.lm_eval", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_lm_evals_command_line_runs_the_jaxgpt_model(trained, tasks, lm, tmp_path):
  out = tmp_path / "out"
  proc = _cli("--model_args", f"workdir={trained[0]}", "--tasks",
              ",".join(tasks[k] for k in ("mc", "roll", "gen")), "--batch_size", "4",
              "--output_path", str(out), "--log_samples")
  assert proc.returncode == 0, proc.stderr[-3000:]
  [results] = glob.glob(str(out / "**" / "results_*.json"), recursive=True)
  res = json.load(open(results))["results"]
  assert res["jaxgpt_toy_mc"]["acc,none"] == trained[1]["lm_eval/jaxgpt_toy_mc/acc"]
  assert res["jaxgpt_toy_roll"]["bits_per_byte,none"] > 0
  assert 0 <= res["jaxgpt_toy_gen"]["exact_match,none"] <= 1
  [samples] = glob.glob(str(out / "**" / "samples_jaxgpt_toy_mc_*.jsonl"), recursive=True)
  for row in map(json.loads, open(samples)):
    doc = row["doc"]
    for choice, resp in zip(doc["choices"], row["resps"]):
      np.testing.assert_allclose(float(resp[0][0]), _direct(lm, doc["context"], choice)[0],
                                 rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_unknown_task_is_one_error_line(trained):
  proc = _cli("--model_args", f"workdir={trained[0]}", "--tasks", "no_such_task_xyz")
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "no_such_task_xyz" in errors[0], proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr


def test_eval_task_errors_are_config_errors(tmp_path, monkeypatch):
  config = load_config("gpt", "test", eval__tasks=(str(tmp_path / "missing.yaml"),))
  with pytest.raises(ConfigError, match=r"eval.tasks: task file .*missing.yaml.* does not exist"):
    hook.check(config)
  with pytest.raises(ConfigError, match="must be a tuple of lm-eval task names"):
    train_run.train_and_evaluate(load_config("gpt", "test", eval__tasks=("",)), str(tmp_path))
  monkeypatch.setattr(hook.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(ConfigError, match=r"needs lm-eval, which is not installed: pip install "):
    hook.check(config)
