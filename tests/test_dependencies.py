"""pyproject.toml declares what the code imports, and an extra that is missing is named.

Each "missing" case runs in a subprocess whose ``sys.modules`` maps the extra's module to
``None``, which makes ``import`` raise ImportError exactly as on a machine without it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys

import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED_DIRECTORIES = {".venv", ".git", "rafka.egg-info", "__pycache__", "build"}


def _run_without(module: str, code: str) -> subprocess.CompletedProcess:
    program = f"import sys\nsys.modules[{module!r}] = None\n{code}"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _requirement_name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)).lower()


def _top_level_imports(path: str) -> set[str]:
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _python_files() -> list[str]:
    files = []
    for directory, subdirectories, names in os.walk(ROOT):
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED_DIRECTORIES]
        files.extend(os.path.join(directory, name) for name in names if name.endswith(".py"))
    return files


def test_pyproject_declares_every_third_party_import():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    declared = {_requirement_name(requirement) for requirement in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        declared.update(_requirement_name(requirement) for requirement in requirements)
    # Modules of this tree (rafka itself, test helpers imported by their file name).
    local = {"rafka"} | {os.path.splitext(os.path.basename(path))[0] for path in _python_files()}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for path in _python_files():
        for name in _top_level_imports(path) - local - set(sys.stdlib_module_names):
            owners = {_requirement_name(owner) for owner in distributions.get(name, [name])}
            if not owners & declared:
                undeclared.setdefault(name, []).append(os.path.relpath(path, ROOT))
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"


def test_import_postgres_connector_without_psycopg_names_the_extra():
    completed = _run_without("psycopg", "import rafka.connect.connectors.postgres")
    assert completed.returncode != 0
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError") and "pip install 'rafka[postgres]'" in last_line


def test_resolve_postgres_plugin_without_psycopg_names_the_extra():
    completed = _run_without("psycopg", (
        "from rafka.connect.errors import PluginNotFoundError\n"
        "from rafka.connect.plugins import resolve\n"
        "try:\n"
        "    resolve('PostgresSource')\n"
        "except PluginNotFoundError as error:\n"
        "    print(error)\n"))
    assert completed.returncode == 0, completed.stderr
    assert "PostgresSource" in completed.stdout and "pip install 'rafka[postgres]'" in completed.stdout


def test_bench_plot_without_matplotlib_fails_before_the_run_naming_the_extra(tmp_path):
    completed = _run_without("matplotlib", (
        "from rafka.cli.main import main\n"
        f"sys.argv = ['rafka', 'bench', 'produce', '--embedded', '--records', '10', '--plot', "
        f"{str(tmp_path / 'plot.png')!r}]\n"
        "main()\n"))
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines() == [
        "rafka: error: --plot needs matplotlib (import of matplotlib halted; None in sys.modules): "
        "pip install 'rafka[bench]' (ValueError)"]
    assert not (tmp_path / "plot.png").exists()


def test_import_rafka_and_quickstart_imports_need_no_extra():
    # The extras and what only the tests use (pyyaml and jsonschema are Ray's own too).
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in ("matplotlib", "pytest", "hypothesis",
                                                                       "confluent_kafka", "kafka"))
    completed = _run_without("psycopg", blocked + (
        "import rafka\n"
        "from rafka.streams import StreamsApp\n"
        "from rafka.connect import Connect\n"
        "import rafka.cli.main\n"
        "from rafka.client.partitioner import partition_for_key\n"))
    assert completed.returncode == 0, completed.stderr
