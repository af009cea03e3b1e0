"""A config file that cannot be loaded (missing, a directory, no `get_config`) is one line
`error: config file PATH ...` and exit code 2 at every entry point, never a traceback."""

import os
import pathlib
import subprocess
import sys

import pytest

from jaxgpt import cli
from jaxgpt import config as config_lib
from jaxgpt.errors import ConfigError, ConfigFileError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args, cwd=ROOT):
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)


def _one_error_line(proc) -> str:
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  return lines[0]


@pytest.fixture
def no_get_config(tmp_path):
  path = tmp_path / "no_get_config.py"
  path.write_text("x = 1\n")
  return str(path)


# jaxgpt.main with every shape of the flag; jaxgpt.sweep (the same cli.flags_parser) once.
@pytest.mark.parametrize("module,args,expected", [
    ("jaxgpt.main", ["--config", "configs/nope.py"],
     "error: config file configs/nope.py does not exist"),
    # with variants and an override (ml_collections would apply it to its deferred error)
    ("jaxgpt.main", ["--config=configs/nope.py:test", "--config.train.steps=1"],
     "error: config file configs/nope.py does not exist"),
    ("jaxgpt.main", ["--config", "configs"],
     "error: config file configs is a directory, not a config file"),
    ("jaxgpt.sweep", ["--config=configs/nope.py:test", "--config.train.steps=1"],
     "error: config file configs/nope.py does not exist"),
])
def test_unloadable_config_file_is_one_line(tmp_path, module, args, expected):
  line = _one_error_line(_run("-m", module, *args, "--workdir", str(tmp_path / "run")))
  assert line == expected


def test_config_file_without_get_config_is_one_line(tmp_path, no_get_config):
  line = _one_error_line(_run("-m", "jaxgpt.main", "--config", no_get_config,
                              "--workdir", str(tmp_path / "run")))
  assert line == f"error: config file {no_get_config} has no get_config(variants) function"


@pytest.mark.parametrize("what,expected", [("nope.bin", "does not exist"),
                                           (".", "is a directory, not an artifact file")])
def test_export_missing_artifact_is_one_line(tmp_path, what, expected):
  path = str(tmp_path / what)
  assert _one_error_line(_run("-m", "jaxgpt.export", path)) == f"error: artifact {path} {expected}"


def test_export_has_no_config_flag():
  line = _one_error_line(_run("-m", "jaxgpt.export", "--config", "configs/nope.py"))
  assert "config" in line


def test_load_file_errors_name_the_path(tmp_path, no_get_config):
  with pytest.raises(ConfigFileError, match=r"^config file configs/nope.py does not exist$"):
    config_lib.load_file("configs/nope.py")
  with pytest.raises(ConfigFileError, match=r"^config file configs is a directory"):
    config_lib.load_file("configs")
  with pytest.raises(ConfigFileError, match="has no get_config"):
    config_lib.load_file(no_get_config)
  with pytest.raises(ConfigFileError, match="path is empty"):
    config_lib.load_file("")
  assert issubclass(ConfigFileError, ConfigError)  # entry points catching ConfigError still do



def test_check_file_resolves_from_the_repository_root_unless_told_not_to(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  # load_file (the scripts' cli.load_config): relative to the repository root too
  assert config_lib.check_file("configs/gpt.py") == config_lib.ROOT / "configs/gpt.py"
  # ml_collections' config flag reads the path as given, so its check does too
  with pytest.raises(ConfigFileError, match="configs/gpt.py does not exist"):
    config_lib.check_file("configs/gpt.py", resolve=False)


@pytest.mark.parametrize("arg", ["configs/nope.py:test", "configs"])
def test_scripts_load_config_is_one_line(capsys, arg):
  """`cli.load_config`, which the scripts' --config goes through."""
  with pytest.raises(SystemExit) as e:
    cli.load_config(arg, {"train.steps": 1})
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith(f"error: config file {arg.split(':')[0]} ")


@pytest.mark.parametrize("argv,value", [
    (["p", "--config", "a.py:x"], "a.py:x"),
    (["p", "--config=a.py", "--config.train.steps=3"], "a.py"),
    (["p", "-config", "a.py"], "a.py"),
    (["p", "--config=a.py", "--config=b.py"], "b.py"),  # the last one, as absl
    (["p", "--configs=a.py"], None),
    (["p", "--", "--config=a.py"], None),
    (["p", "--config"], None),  # absl reports the missing value
])
def test_flag_value(argv, value):
  assert cli.flag_value(argv, "config") == value
