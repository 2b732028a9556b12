"""The examples in the docstrings (real judge outputs, messy labels, answers and their scores) are checked."""
import doctest
import importlib
import pkgutil

import pytest

import helpers

MODULES = sorted(m.name for m in pkgutil.walk_packages(helpers.__path__, "helpers.") if m.name != "helpers.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


def test_the_modules_with_examples_are_found():
    """The parametrisation above covers the modules whose docstrings carry examples."""
    with_examples = {n for n in MODULES if doctest.DocTestFinder().find(importlib.import_module(n)) and
                     any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(n)))}
    assert {"helpers.judge.parse", "helpers.judge.offline", "helpers.study.categories", "helpers.study.dedup",
            "helpers.study.cleaning", "helpers.selfinstruct.parse", "helpers.study.imports"} <= with_examples
