"""Which ``helpers`` modules a notebook or a module depends on, read from its import statements.

A stage's fingerprint must change whenever code its result depends on changes. A list kept by
hand goes stale the day someone adds an import and forgets the list, and then the study silently
reuses an old result. So the list is derived: every ``import helpers...`` and
``from helpers... import ...`` in a notebook's code cells, then in the modules those name, and so
on (imports inside functions count too), plus the packages above each module (importing
``helpers.judge.parse`` runs ``helpers/judge/__init__.py`` first).

>>> sorted(module_closure({"helpers.study.prompt"}))
['helpers', 'helpers.study', 'helpers.study.prompt']
>>> {"helpers.judge.text_metrics", "helpers.study.records"} <= module_closure({"helpers.judge.offline"})
True
"""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""``src/helpers``: module helpers.<pkg>.<mod> is <pkg>/<mod>.py or <pkg>/<mod>/__init__.py under it."""


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of module ``name`` (``helpers...``), or None if it is not a module of ours."""
    parts = name.split(".")
    if parts[0] != package_dir.name:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imports_of(source: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The modules of ours that ``source`` imports, anywhere in it (not the packages above them)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from helpers.x import y`: y may be a submodule or a name defined in helpers.x
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if module_file(n, package_dir))
    return found


def parents(name: str) -> list[str]:
    """The packages Python imports before module ``name``, outermost first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(roots: set[str], package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the modules it imports, for every module reachable from ``roots``."""
    graph: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in graph:
            continue
        graph[name] = imports_of(module_file(name, package_dir).read_text(encoding="utf-8"), package_dir)
        todo.extend(graph[name] | set(parents(name)))
    return graph


def module_closure(roots: set[str], package_dir: Path = PACKAGE_DIR) -> set[str]:
    """Every module of ours that importing ``roots`` can run, their packages included."""
    return set(import_graph(roots, package_dir))


def notebook_source(path: Path) -> str:
    """The Python of a notebook's code cells; IPython magics and shell lines are left out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            lines.extend(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
    return "\n".join(lines)


def notebook_modules(path: Path, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """Every module of ours a notebook's code can run (see ``module_closure``)."""
    return module_closure(imports_of(notebook_source(path), package_dir), package_dir)


def code_hashes(modules: set[str], package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """Module -> sha256 of its source and of its data file, for a fingerprint.

    A module's data file is the ``.yaml`` file of the same name beside it (``suite/writing.py`` reads
    ``suite/writing.yaml``): what it holds changes results as much as the code does.
    """
    out = {}
    for m in sorted(modules):
        source = module_file(m, package_dir)
        h = hashlib.sha256(source.read_bytes())
        data = source.with_suffix(".yaml")
        if data.is_file():
            h.update(data.read_bytes())
        out[m] = h.hexdigest()
    return out
