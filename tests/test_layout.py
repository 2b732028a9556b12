"""The house rules: one package per stage, no import cycles, fingerprints that cover every module a
stage can run, notebooks stored as their own clean source, tests laid out as the package, and a short README
beside a documentation site whose paths exist and whose every page is in its navigation."""
import ast
import json
import os
import re
import subprocess
import sys

import pytest

from helpers.study.imports import import_graph, imports_of, module_closure, notebook_modules, notebook_source
from helpers.study.loading import load_config, study_dir
from helpers.study.paths import REPO
from helpers.study.runner import NOTEBOOKS, STAGES, fingerprint, plan

PACKAGE = REPO / "src" / "helpers"
ALL_MODULES = {"helpers." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
               for p in PACKAGE.rglob("*.py")} - {"helpers.__init__"} | {"helpers"}
STAGE_PACKAGES = ("selfinstruct", "data", "finetune", "generate", "judge", "analysis")
TESTS = REPO / "tests"
HOUSE_RULES = {"test_layout.py", "test_docstrings.py", "test_environment.py"}  # tests of the whole repository


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_one_package_per_stage_named_as_its_notebook():
    notebooks = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert [n.split("_", 1)[1] for n in notebooks] == list(STAGE_PACKAGES)
    for name in STAGE_PACKAGES:
        init = PACKAGE / name / "__init__.py"
        doc = init.read_text(encoding="utf-8")
        assert f"notebooks/{notebooks[STAGE_PACKAGES.index(name)]}.ipynb" in doc, f"{init}: say which notebook"
        assert "reads" in doc.lower() and "writes" in doc.lower(), f"{init}: say what the stage reads and writes"


def test_every_stage_package_has_its_entry_in_stage_py():
    """One name for every stage's entry: ``<package>/stage.py`` with ``run(cfg, study_dir, ...)``, exported by the
    package and described in its docstring."""
    import importlib
    import inspect

    for name in STAGE_PACKAGES:
        assert (PACKAGE / name / "stage.py").is_file(), f"src/helpers/{name}/stage.py: the stage's entry is missing"
        stage = importlib.import_module(f"helpers.{name}.stage")
        assert inspect.isfunction(getattr(stage, "run", None)), f"helpers.{name}.stage has no function run"
        assert list(inspect.signature(stage.run).parameters)[:2] == ["cfg", "study_dir"], \
            f"helpers.{name}.stage.run{inspect.signature(stage.run)}: the first two parameters must be cfg, study_dir"
        package = importlib.import_module(f"helpers.{name}")
        assert package.run is stage.run and "run" in package.__all__, f"helpers.{name} must export stage.run"
        assert "stage: ``stage.run(cfg, study_dir" in package.__doc__, f"helpers.{name}: name the stage's entry"


def test_no_import_cycles():
    assert find_cycle(import_graph(ALL_MODULES)) is None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_shared_part_imports_no_stage():
    shared = {m for m in ALL_MODULES if m.startswith("helpers.study") or m == "helpers.openai_client"}
    graph = import_graph(shared)
    for module in shared:
        stages = {m for m in graph[module] if m.split(".")[1] in STAGE_PACKAGES}
        assert not stages, f"{module} imports the stage modules {stages}"


def test_a_stage_imports_no_later_stage():
    graph = import_graph(ALL_MODULES)
    order = {name: i for i, name in enumerate(STAGE_PACKAGES)}
    for module, imported in graph.items():
        part = module.split(".")[1] if "." in module else ""
        for other in imported:
            other_part = other.split(".")[1] if "." in other else ""
            if part in order and other_part in order:
                assert order[other_part] <= order[part], f"{module} (stage {part}) imports {other}"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
@pytest.mark.slow  # a fresh interpreter per notebook
def test_fingerprint_covers_every_module_a_notebook_imports(stage):
    """Run the notebook's imports in a fresh interpreter: every helpers module loaded must be in the fingerprint."""
    nb = NOTEBOOKS / stage.notebook
    source = notebook_source(nb)
    import ast

    imports = "\n".join(ast.unparse(n) for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom)))
    code = imports + "\nimport sys, json\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'helpers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    covered = notebook_modules(nb)
    assert loaded <= covered, f"{stage.notebook}: modules run but not in the fingerprint: {sorted(loaded - covered)}"
    assert f"helpers.{stage.name}" in covered


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_a_notebook_imports_only_its_own_stage_and_the_shared_part(stage):
    """Read from the notebook's imports: a figure a data notebook shows that lives in the analysis package
    would put the analysis code in the data stage's key (a findings edit would rerun everything)."""
    shared = {"helpers", "helpers.openai_client"}
    modules = notebook_modules(NOTEBOOKS / stage.notebook)
    outside = sorted(m for m in modules if m not in shared and m.split(".")[1] not in (stage.name, "study"))
    assert not outside, f"{stage.notebook} can run modules of other stages: {outside}"
    assert f"helpers.{stage.name}" in modules


def test_imports_inside_functions_and_of_packages_count(tmp_path):
    """A module reached only through an import inside a function, or through a package's __init__, is covered."""
    pkg = tmp_path / "helpers"
    (pkg / "stage").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stage" / "__init__.py").write_text("from helpers.stage.run import go\n")
    (pkg / "stage" / "run.py").write_text("def go():\n    from helpers.stage import deep\n    return deep.X\n")
    (pkg / "stage" / "deep.py").write_text("from helpers.shared import Y\nX = Y\n")
    (pkg / "shared.py").write_text("Y = 1\n")
    (pkg / "unused.py").write_text("")
    assert imports_of("from helpers.stage import go", pkg) == {"helpers.stage"}
    closure = module_closure({"helpers.stage"}, pkg)
    assert closure == {"helpers", "helpers.stage", "helpers.stage.run", "helpers.stage.deep", "helpers.shared"}


def test_a_change_in_a_module_reached_only_indirectly_makes_the_stage_stale(tmp_path, monkeypatch):
    """judge.text_metrics is reached only through judge.offline: editing it must change the judge's fingerprint."""
    cfg = load_config("configs/micro.yaml")
    run = next(r for r in plan(cfg, study_dir(cfg, tmp_path)) if r.stage.name == "judge")
    assert "helpers.judge.text_metrics" in notebook_modules(NOTEBOOKS / run.stage.notebook)
    before = fingerprint(cfg, run)
    from helpers.study import imports

    real = imports.module_file

    edit = {"text": ""}

    def edited(name, package_dir=imports.PACKAGE_DIR):
        path = real(name, package_dir)
        if name == "helpers.judge.text_metrics":
            copy = tmp_path / "text_metrics.py"
            copy.write_text(path.read_text() + edit["text"])
            return copy
        return path

    monkeypatch.setattr(imports, "module_file", edited)
    edit["text"] = "\n# a comment\n"
    assert fingerprint(cfg, run) == before  # prose is not code
    edit["text"] = "\nEDITED = 1\n"
    assert fingerprint(cfg, run) != before


def test_a_change_in_a_data_file_makes_the_data_stage_stale(tmp_path, monkeypatch):
    """The built-in suite's words live in ``suite/<module>.yaml`` beside the code: an edit there reruns the data stage."""
    cfg = load_config("configs/micro.yaml")
    run = next(r for r in plan(cfg, study_dir(cfg, tmp_path)) if r.stage.name == "data")
    assert "helpers.data.suite.writing" in notebook_modules(NOTEBOOKS / run.stage.notebook)
    before = fingerprint(cfg, run)
    from helpers.study import imports

    real = imports.module_file
    copy = tmp_path / "writing.py"

    def edited(name, package_dir=imports.PACKAGE_DIR):
        path = real(name, package_dir)
        if name == "helpers.data.suite.writing":
            copy.write_bytes(path.read_bytes())
            (tmp_path / "writing.yaml").write_text(path.with_suffix(".yaml").read_text(encoding="utf-8") + "\n# an edit\n",
                                                   encoding="utf-8")
            return copy
        return path

    monkeypatch.setattr(imports, "module_file", edited)
    assert fingerprint(cfg, run) != before


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_clean_with_stable_ids(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    ids = [c.get("id") for c in nb["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), f"{notebook.name}: every cell needs its own id"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, \
                f"{notebook.name} cell {cell['id']}: stored with outputs; clear them before committing"
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "overrides = []" in "".join(params[0]["source"])
    assert "open_study(config, root, overrides)" in notebook_source(notebook)


def test_no_notebook_code_is_kept_in_python_strings():
    """The notebooks are edited as notebooks: nothing outside tests/ writes their cells."""
    for path in REPO.rglob("*.py"):
        if {"tests", ".venv", "data", "reports"} & set(path.relative_to(REPO).parts[:1]) or path.name.startswith("."):
            continue
        assert "new_code_cell" not in path.read_text(encoding="utf-8"), f"{path} builds notebook cells"


DOCS = REPO / "docs"
README_MAX_LINES = 250


def docs_text() -> dict[str, str]:
    """The README and every page of the documentation site, by path."""
    pages = {"README.md": (REPO / "README.md").read_text(encoding="utf-8")}
    pages |= {f"docs/{p.name}": p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md"))}
    return pages


def test_paths_the_readme_and_the_docs_name_exist():
    for name, text in docs_text().items():
        paths = set(re.findall(r"(?<![\w/.])((?:src/helpers|notebooks|configs|benchmarks|tests|docs)/[\w./-]*\w)", text))
        assert name != "README.md" or len(paths) > 10, "the README names the files a newcomer opens first"
        missing = sorted(p for p in paths if not (REPO / p).exists())
        assert not missing, f"{name} names paths that do not exist: {missing}"
    assert sum(len(t) for t in docs_text().values()) > 5 * len(docs_text()["README.md"])  # the details live in docs/


def test_the_readme_stays_a_front_page_and_links_into_the_docs():
    """At most README_MAX_LINES lines, the two commands verbatim, a picture of the report that exists, and a link
    to every page of the site (the rest of what the README once held lives there)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES, f"README.md has {len(readme.splitlines())} lines"
    assert "make study" in readme and "make test" in readme
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images and all((REPO / i).is_file() and i.endswith(".png") for i in images), images
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)(?:#[\w-]+)?\)", readme))
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")} - {"docs/index.md"}
    assert pages <= linked, f"README.md links to no {sorted(pages - linked)}"


def nav_pages(nav) -> list[str]:
    """Every page a mkdocs ``nav`` lists, depth first."""
    out = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        out += nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_every_docs_page_is_in_the_site_navigation_and_make_test_all_builds_it_strict():
    import yaml

    site = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(site["nav"])
    assert len(listed) == len(set(listed)), f"a page is listed twice: {listed}"
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md")), "mkdocs.yml's nav and docs/*.md differ"
    assert site["theme"]["name"] == "material" and site.get("strict") is True
    assert site["validation"]["omitted_files"] == "warn" and site["validation"]["anchors"] == "warn"
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    docs_rule = re.search(r"^docs:.*\n((?:\t.*\n)+)", make, re.M)
    assert docs_rule and "mkdocs build --strict" in docs_rule.group(1)
    assert "docs" in re.search(r"^test-all:(.*)$", make, re.M).group(1).split()
    assert "make test-all" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_the_site_builds_strict_and_a_page_left_out_or_a_broken_anchor_fails_it(tmp_path):
    """What make docs runs, here on the real pages and on a copy with a page missing from the nav and a link to an
    anchor that does not exist: the first builds, the second stops naming both."""
    import shutil

    def build(root):
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                               "--site-dir", str(tmp_path / "site")], capture_output=True, text=True, env=env)

    done = build(REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "measurements" / "index.html").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(REPO / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "docs" / "stray.md").write_text("# A page nobody listed\n", encoding="utf-8")
    with open(copy / "docs" / "index.md", "a", encoding="utf-8") as f:
        f.write("\nSee [the data](data.md#no-such-section).\n")
    failed = build(copy)
    assert failed.returncode != 0
    assert "stray.md" in failed.stderr and "no-such-section" in failed.stderr


def test_the_functions_the_docs_name_are_importable_there():
    import importlib

    text = "".join(docs_text().values())
    for path in (REPO / "src").rglob("*.py"):
        text += path.read_text(encoding="utf-8")
    names = set(re.findall(r"``(helpers(?:\.\w+)+)``", text)) | set(re.findall(r"`(helpers(?:\.\w+)+)`", text))
    names.add("helpers.judge.parse_score")  # named by users of the judge
    for name in sorted(names):
        module, attrs = name, []
        while True:
            try:
                obj = importlib.import_module(module)
                break
            except ModuleNotFoundError:
                module, _, attr = module.rpartition(".")
                attrs.insert(0, attr)
                assert module, f"{name}: no such module"
        for attr in attrs:
            assert hasattr(obj, attr), f"{name}: {module} has no {'.'.join(attrs)}"
            obj = getattr(obj, attr)



def test_tests_mirror_the_package():
    """One test folder per package of src/helpers plus end_to_end/ (studies across stages); at the top only
    the tests of top-level modules (helpers/estimate.py: tests/test_estimate.py) and of the house rules."""
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == packages | {"end_to_end"}, f"tests/ folders {sorted(folders)} differ from src/helpers/ packages"
    top = {f"test_{p.stem.strip('_')}.py" for p in PACKAGE.glob("*.py")}
    strays = sorted(p.name for p in TESTS.glob("test_*.py") if p.name not in top | HOUSE_RULES)
    assert not strays, f"test modules at the top of tests/ that belong in a stage folder: {strays}"


def test_test_modules_have_unique_names_and_import_no_other_test_module():
    """pytest imports test modules by their file name (no __init__.py), and shared code lives in conftest.py
    fixtures or a helper module (tests/builders.py, tests/fake_openai.py), never in another test module."""
    modules = sorted(TESTS.rglob("test_*.py"))
    names = [p.name for p in modules]
    assert len(set(names)) == len(names), f"test modules with the same name: {sorted(n for n in names if names.count(n) > 1)}"
    assert len(modules) > 30
    for path in modules + sorted(TESTS.rglob("conftest.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bad = sorted(m for m in imported if m.split(".")[0].startswith("test_") or m.split(".")[0] == "conftest")
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"
