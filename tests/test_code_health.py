"""Checks over the source tree that keep failures visible.

A broad handler (``except:``, ``except Exception``, ``except BaseException``) whose body
does nothing (``pass``, ``continue``, a constant ``return``) hides whatever it catches.
Each one left in the tree says, in a comment on its ``except`` line, why nothing more can
be done; the others log or catch something narrower.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED_DIRECTORIES = {".venv", ".git", "rafka.egg-info", "__pycache__", "build"}
BROAD = {"Exception", "BaseException"}


def _python_files() -> list[str]:
    files = []
    for directory, subdirectories, names in os.walk(ROOT):
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED_DIRECTORIES]
        files.extend(os.path.join(directory, name) for name in names if name.endswith(".py"))
    return sorted(files)


def _is_broad(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(name, ast.Name) and name.id in BROAD for name in caught)


def _does_nothing(statement: ast.stmt) -> bool:
    if isinstance(statement, (ast.Pass, ast.Continue)):
        return True
    if isinstance(statement, ast.Return):
        return statement.value is None or isinstance(statement.value, ast.Constant)
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _reason(line: str) -> str:
    """The comment's text after any ``noqa`` code: ``# noqa: BLE001 - why`` gives ``why``."""
    _, _, comment = line.partition("#")
    comment = comment.strip()
    if comment.startswith("noqa"):
        _, _, comment = comment.partition(" - ")
    return comment.strip()


def test_every_silent_broad_except_says_why():
    unexplained = []
    for path in _python_files():
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source, path)):
            if isinstance(node, ast.ExceptHandler) and _is_broad(node) and all(map(_does_nothing, node.body)):
                if not _reason(lines[node.lineno - 1]):
                    unexplained.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == [], "broad excepts that swallow without saying why:\n" + "\n".join(unexplained)


def _imported_modules(path: str) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports included)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_actors_import_no_client_module():
    """Servers never import clients: both call actors through rafka.calls."""
    offenders = {}
    for path in _python_files():
        if os.path.relpath(path, ROOT).startswith("actors" + os.sep):
            client_imports = sorted(m for m in _imported_modules(path) if m == "rafka.client" or
                                    m.startswith("rafka.client."))
            if client_imports:
                offenders[os.path.relpath(path, ROOT)] = client_imports
    assert offenders == {}


def test_cli_modules_do_not_import_the_cli_entry_point():
    """cli/main.py assembles the commands from the other cli modules; a module that
    imported it back would make an import cycle (issue 23 item 5)."""
    offenders = sorted(
        os.path.relpath(path, ROOT) for path in _python_files()
        if os.path.relpath(path, ROOT).startswith("cli" + os.sep) and not path.endswith(os.sep + "main.py")
        and "rafka.cli.main" in _imported_modules(path))
    assert offenders == []


def test_the_cli_entry_point_does_not_import_the_wire_protocol_stack():
    """Every `rafka` command imports cli/main.py; kio's message schemas (the wire
    protocol) cost 0.4 s on a quiet machine and over 2 s on a loaded one, paid by each
    command although none of them speaks the protocol (wire/limits.py)."""
    script = "import sys, rafka.cli.main\nprint(sorted(m for m in sys.modules if m == 'kio' or m == 'rafka.wire.protocol'))"
    completed = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert completed.stdout.strip() == "[]"
