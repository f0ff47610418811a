"""Every docstring example of the package runs (``>>>`` lines), as part of ``make unit``.

One test per module of ``helpers`` whose source holds an example; examples that need a
finished run's output on disk are marked ``# doctest: +SKIP`` where they stand.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import helpers

PACKAGE = Path(helpers.__file__).parent
WITH_EXAMPLES = sorted(p.stem for p in PACKAGE.glob("*.py") if ">>>" in p.read_text("utf-8"))
#: Modules whose only examples are skipped (they need a run's output folder).
ONLY_SKIPPED = {"explorer"}


def test_the_list_of_modules_is_not_empty():
    assert len(WITH_EXAMPLES) >= 25


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"helpers.{name}")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of helpers.{name} failed"
    assert result.attempted > 0 or name in ONLY_SKIPPED
