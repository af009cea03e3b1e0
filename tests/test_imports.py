"""The package's import graph, read from the source (AST): no cycles, the layering rules hold,
and jaxgpt modules are imported inside functions only where a comment says why.

Layering (docs/design.md "Layering"): models, optim and data never import train, sweep, export,
report or the entry points; the leaf helpers (errors, checks, registry, keypath, files) import
nothing of jaxgpt but `errors`; nothing imports `jaxgpt.main`, which only parses flags and
dispatches; train never imports what builds on it (sweep, export, report, cli, main), and no two
packages import each other; `jaxgpt.bench` (the benchmarks) may import any of jaxgpt, and
nothing outside it imports it.
"""

import ast
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

LOWER = ("jaxgpt.models", "jaxgpt.optim", "jaxgpt.data")
UPPER = ("jaxgpt.train", "jaxgpt.sweep", "jaxgpt.export", "jaxgpt.report", "jaxgpt.main",
         "jaxgpt.cli")
# Built on train: train never imports them (export and the partition printout are run hooks).
ABOVE_TRAIN = ("jaxgpt.sweep", "jaxgpt.export", "jaxgpt.report", "jaxgpt.main", "jaxgpt.cli")
LEAVES = ("jaxgpt.errors", "jaxgpt.checks", "jaxgpt.registry", "jaxgpt.keypath", "jaxgpt.files")
BENCH = ("jaxgpt.bench",)  # imported by scripts and tests only


def module_names(pkg: pathlib.Path) -> dict[str, pathlib.Path]:
  out = {}
  for path in pkg.rglob("*.py"):
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _targets(node: ast.AST, module: str, modules: dict) -> list[str]:
  """The jaxgpt modules an import statement names (`from a import b` is a.b if that is a
  module, else a)."""
  if isinstance(node, ast.Import):
    return [a.name for a in node.names if a.name.split(".")[0] == "jaxgpt"]
  if node.level:  # relative: resolve against this module's package
    base = module.split(".")
    if not modules[module].name == "__init__.py":
      base = base[:-1]
    base = base[:len(base) - node.level + 1]
    src = ".".join(base + ([node.module] if node.module else []))
  else:
    src = node.module or ""
  if src.split(".")[0] != "jaxgpt":
    return []
  return [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]


def import_graph(pkg: pathlib.Path):
  """(edges {module: {imported modules}}, [(module, line, target)] of imports inside
  functions without a comment on that line or the line above)."""
  modules = module_names(pkg)
  edges, uncommented = {m: set() for m in modules}, []
  for mod, path in modules.items():
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef,
                                                              ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
      if not isinstance(node, (ast.Import, ast.ImportFrom)):
        continue
      targets = [t for t in _targets(node, mod, modules) if t in modules and t != mod]
      edges[mod].update(targets)
      if targets and id(node) in nested:
        here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip()
        if "#" not in here and not above.startswith("#"):
          uncommented.append((mod, node.lineno, targets[0]))
  return edges, uncommented


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as [a, b, ..., a], or None."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for n in sorted(edges.get(m, ())):
      if state.get(n) == 1:
        return stack[stack.index(n):] + [n]
      if n not in state:
        found = visit(n)
        if found:
          return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(edges):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def _under(module: str, prefixes) -> bool:
  return any(module == p or module.startswith(p + ".") for p in prefixes)


def layering_violations(edges: dict[str, set[str]]) -> list[str]:
  bad = []
  for mod, targets in edges.items():
    for t in sorted(targets):
      if _under(mod, LOWER) and _under(t, UPPER):
        bad.append(f"{mod} imports {t} (models/optim/data never import train/sweep/export)")
      if _under(mod, ("jaxgpt.train",)) and _under(t, ABOVE_TRAIN):
        bad.append(f"{mod} imports {t} (train never imports what builds on it; use a run hook)")
      if mod in LEAVES and t != "jaxgpt.errors":
        bad.append(f"{mod} imports {t} (a leaf helper imports nothing of jaxgpt)")
      if t == "jaxgpt.main":
        bad.append(f"{mod} imports jaxgpt.main (the entry point only dispatches)")
      if _under(t, BENCH) and not _under(mod, BENCH):
        bad.append(f"{mod} imports {t} (nothing in jaxgpt imports the benchmarks)")
  return bad


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
  """The import graph between jaxgpt's top-level packages and modules (jaxgpt.train, ...)."""
  top = lambda m: ".".join(m.split(".")[:2])
  out: dict[str, set[str]] = {}
  for mod, targets in edges.items():
    out.setdefault(top(mod), set()).update(top(t) for t in targets if top(t) != top(mod))
  return out


@pytest.fixture(scope="module")
def graph():
  return import_graph(ROOT / "jaxgpt")


def test_no_import_cycles(graph):
  edges, _ = graph
  assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_no_package_cycles(graph):
  edges, _ = graph
  cycle = find_cycle(package_edges(edges))
  assert cycle is None, " -> ".join(cycle)


def test_layering_rules(graph):
  edges, _ = graph
  assert layering_violations(edges) == []


def test_function_level_imports_say_why(graph):
  _, uncommented = graph
  assert uncommented == [], uncommented


def test_checker_finds_an_injected_cycle_and_layering_break(tmp_path):
  pkg = tmp_path / "jaxgpt"
  shutil.copytree(ROOT / "jaxgpt", pkg, ignore=shutil.ignore_patterns("__pycache__"))
  edges, _ = import_graph(pkg)
  assert find_cycle(edges) is None
  layers = pkg / "models" / "layers.py"  # gpt imports layers; make layers import gpt back
  layers.write_text(layers.read_text() + "\nfrom jaxgpt.models import gpt  # injected\n")
  cycle = find_cycle(import_graph(pkg)[0])
  assert cycle is not None and {"jaxgpt.models.gpt", "jaxgpt.models.layers"} <= set(cycle)
  optim = pkg / "optim" / "build.py"
  optim.write_text(optim.read_text() + "\n\ndef f():\n  from jaxgpt.train import loop\n")
  edges, uncommented = import_graph(pkg)
  assert any("jaxgpt.optim.build imports jaxgpt.train.loop" in v
             for v in layering_violations(edges))
  assert ("jaxgpt.optim.build", len(optim.read_text().splitlines()), "jaxgpt.train.loop") \
      in uncommented
  loop = pkg / "train" / "loop.py"  # the old train -> export -> train package cycle
  loop.write_text(loop.read_text() + "\nfrom jaxgpt.export import exporter  # injected\n")
  edges, _ = import_graph(pkg)
  assert find_cycle(package_edges(edges)) is not None
  assert any("jaxgpt.train.loop imports jaxgpt.export.exporter" in v
             for v in layering_violations(edges))
  sweep = pkg / "sweep" / "runner.py"  # a library module that imports a benchmark
  sweep.write_text(sweep.read_text() + "\nfrom jaxgpt.bench import timing  # injected\n")
  assert "jaxgpt.sweep.runner imports jaxgpt.bench.timing (nothing in jaxgpt imports the " \
      "benchmarks)" in layering_violations(import_graph(pkg)[0])
