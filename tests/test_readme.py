"""The README's two commands are what CI runs and what a new user types."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_starts_with_demo_and_test_commands() -> None:
    demo, tests = readme_commands()
    assert demo.endswith("hubcache demo")
    assert "pytest" in tests and ".[test]" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _demo, tests = readme_commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_test_run_writes_no_hypothesis_database_into_the_checkout() -> None:
    """The README's flags keep pytest's cache out of the checkout; hypothesis's example
    database must stay out too, in every profile."""
    from hypothesis import settings

    assert settings().database is None
    assert settings.get_profile("ci").database is None
