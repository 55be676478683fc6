"""The README's examples are executed, so they cannot drift from the code."""

from __future__ import annotations

import doctest
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    # code fences become blank lines so that an example's expected output ends at the fence
    text = "\n".join("" if line.startswith("```") else line
                     for line in README.read_text().splitlines())
    test = doctest.DocTestParser().get_doctest(text, {}, "README", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.IGNORE_EXCEPTION_DETAIL)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 6
    assert result.failed == 0
