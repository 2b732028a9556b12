"""The examples in the docstrings (real judge outputs, messy labels, answers and their scores) are checked."""
import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["helpers.judge", "helpers.scoring", "helpers.loaders", "helpers.dedup",
                                  "helpers.selection", "helpers.selfinstruct"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
