"""docs/design.md's layout block is the tree: every module, config, script and doc page is
listed, and everything listed exists (the README links to it instead of keeping a copy)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
DESC_COL = 31  # descriptions (and their continuation lines) start at this column
CHECKED = {"jaxgpt": (".py",), "configs": (".py",), "scripts": (".py", ".sh"), "docs": (".md",)}


def layout_block(text: str) -> list[str]:
  """The lines of the fenced block under '## Layout'."""
  section = text.split("\n## Layout\n", 1)[1]
  return section.split("```\n", 2)[1].splitlines()


def listed_paths(lines: list[str]) -> set[str]:
  """Every path the block names, folders ending in '/'."""
  paths, stack = set(), []
  for n, line in enumerate(lines, 1):
    indent = len(line) - len(line.lstrip(" "))
    if not line.strip() or indent >= DESC_COL - 1:
      continue  # a description's continuation
    if indent % 2 or indent // 2 > len(stack):
      raise ValueError(f"layout line {n}: indent {indent} does not nest: {line!r}")
    name = line.split()[0]
    stack = stack[:indent // 2] + [name]
    paths.add("".join(stack))
  return paths


def tree_paths(root: pathlib.Path) -> set[str]:
  """The files the layout must list: modules (not __init__.py), configs, scripts, doc pages."""
  out = set()
  for top, suffixes in CHECKED.items():
    for p in (root / top).rglob("*"):
      if p.suffix in suffixes and p.name != "__init__.py" and "__pycache__" not in p.parts:
        out.add(p.relative_to(root).as_posix())
  return out


def differences(text: str, root: pathlib.Path) -> list[str]:
  listed = listed_paths(layout_block(text))
  files = {p for p in listed if not p.endswith("/")}
  checked = {p for p in files if p.split("/")[0] in CHECKED}
  out = [f"not in docs/design.md's layout: {p}" for p in sorted(tree_paths(root) - checked)]
  out += [f"listed but missing: {p}" for p in sorted(listed) if not (root / p).exists()
          and p != "checkpoints/"]
  return out


def test_layout_matches_the_tree():
  bad = differences((ROOT / "docs" / "design.md").read_text(), ROOT)
  assert not bad, "\n".join(bad)


def test_readme_links_instead_of_copying():
  readme = (ROOT / "README.md").read_text()
  assert "docs/design.md#layout" in readme
  assert not re.search(r"^jaxgpt/\S+\.py ", readme, re.M)  # no second copy of the tree


def test_checker_fails_on_drift(tmp_path):
  text = (ROOT / "docs" / "design.md").read_text()
  (tmp_path / "jaxgpt" / "optim").mkdir(parents=True)
  for top in ("configs", "scripts", "docs"):
    (tmp_path / top).mkdir()
  for p in listed_paths(layout_block(text)):
    target = tmp_path / p
    if p.endswith("/"):
      target.mkdir(parents=True, exist_ok=True)
    else:
      target.parent.mkdir(parents=True, exist_ok=True)
      target.write_text("")
  assert differences(text, tmp_path) == []
  (tmp_path / "jaxgpt" / "optim" / "new_idea.py").write_text("")  # added, not documented
  (tmp_path / "scripts" / "bench_muon.py").unlink()  # documented, gone
  assert differences(text, tmp_path) == ["not in docs/design.md's layout: jaxgpt/optim/new_idea.py",
                                         "listed but missing: scripts/bench_muon.py"]
