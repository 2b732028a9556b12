"""Which ``helpers`` modules a notebook or a module depends on, read from its import statements.

A stage's fingerprint must change whenever code its result depends on changes. A list kept by
hand goes stale the day someone adds an import and forgets the list, and then the study silently
reuses an old result. So the list is derived: every ``import helpers...`` and
``from helpers... import ...`` in a notebook's code cells, then in the modules those name, and so
on (imports inside functions count too), plus the packages above each module (importing
``helpers.judge.parse`` runs ``helpers/judge/__init__.py`` first).

What is hashed is the code, not its text: ``code_digest`` hashes the syntax tree with every docstring and
comment left out (``ast`` drops comments; bare string statements, docstrings included, are removed), so a
stage never reruns for an edit to prose, while any change to what the code does gives a new digest.

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
        graph[name] = _module_imports(module_file(name, package_dir), package_dir)
        todo.extend(graph[name] | set(parents(name)))
    return graph


_imports: dict[tuple[str, str], tuple[int, int, set[str]]] = {}
"""(str(path), package dir) -> (size, mtime_ns, imports): a module read once per process while it stays the same."""


def _module_imports(path: Path, package_dir: Path) -> set[str]:
    st = path.stat()
    hit = _imports.get((str(path), str(package_dir)))
    if hit and hit[:2] == (st.st_size, st.st_mtime_ns):
        return set(hit[2])
    found = imports_of(notebook_source(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8"), package_dir)
    _imports[(str(path), str(package_dir))] = (st.st_size, st.st_mtime_ns, found)
    return set(found)


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
    return module_closure(_module_imports(path, package_dir), package_dir)


def strip_prose(tree: ast.AST) -> ast.AST:
    """``tree`` without its bare string statements (docstrings of modules, classes, functions and attributes).

    A body left empty gets ``pass``, so the tree stays one Python could compile.
    """
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                continue
            kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                            and isinstance(s.value.value, str))]
            setattr(node, name, kept or ([ast.Pass()] if name == "body" and not isinstance(node, ast.Module) else []))
    return tree


def source_digest(source: str) -> str:
    """sha256 of the syntax tree of Python ``source`` without docstrings and comments (line numbers left out).

    >>> source_digest("def f():\\n    'Add one.'\\n    return 1  # one") == source_digest("def f():\\n    return 1")
    True
    >>> source_digest("def f():\\n    return 1") == source_digest("def f():\\n    return 2")
    False
    """
    return hashlib.sha256(ast.dump(strip_prose(ast.parse(source))).encode()).hexdigest()


_digests: dict[str, tuple[int, int, str]] = {}
"""str(path) -> (size, mtime_ns, digest): a file parsed once per process while it stays the same."""


def code_digest(path: Path) -> str:
    """``source_digest`` of a ``.py`` file, or of the code cells of a notebook (``notebook_source``)."""
    st = path.stat()
    hit = _digests.get(str(path))
    if hit and hit[:2] == (st.st_size, st.st_mtime_ns):
        return hit[2]
    source = notebook_source(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
    digest = source_digest(source)
    _digests[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    return digest


def data_files(source: Path) -> list[Path]:
    """The data files a module reads beside it: its name with another suffix or a ``_`` part
    (``suite/writing.yaml`` for ``suite/writing.py``, ``paper_claims.yaml`` for ``paper.py``) and its
    templates (``templates/report.html.j2`` for ``report.py``). What they hold changes results as much
    as the code does, so they are part of the module's key.
    """
    stem, folder = source.stem, source.parent
    found = [*folder.glob(f"{stem}.*"), *folder.glob(f"{stem}_*"), *(folder / "templates").glob(f"{stem}.*")]
    return sorted(f for f in found if f.is_file() and f.suffix not in (".py", ".pyc"))


def code_hashes(modules: set[str], package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """Module -> ``code_digest`` of its source, with the bytes of its ``data_files``, for a key."""
    out = {}
    for m in sorted(modules):
        source = module_file(m, package_dir)
        h = hashlib.sha256(code_digest(source).encode())
        for data in data_files(source):
            h.update(data.name.encode() + b"\0" + data.read_bytes())
        out[m] = h.hexdigest()
    return out


def code_label(name: str, package_dir: Path = PACKAGE_DIR) -> str:
    """How a reason names a module: its file under ``src/`` (``helpers/finetune/tokens.py``)."""
    base = package_dir.joinpath(*name.split(".")[1:])
    return (base / "__init__.py" if base.is_dir() else base.with_suffix(".py")).relative_to(package_dir.parent).as_posix()
