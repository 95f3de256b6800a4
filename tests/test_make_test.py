"""Issue #14.7: the README's `make test` on a fresh machine sets up what it needs, or stops at
once naming the one command to run; `.ci/run` is nothing but that command."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
PREREQUISITES = ROOT / "tests" / "setup" / "prerequisites.sh"


def run_prerequisites(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PREREQUISITES)], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_make_test_sets_up_its_prerequisites_before_any_test_runs():
    planned = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    first_pytest = next(i for i, line in enumerate(planned) if "pytest" in line)
    assert any("prerequisites.sh" in line for line in planned[:first_pytest])


def test_ci_runs_the_readme_command_and_nothing_else():
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert commands == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text()


def test_a_missing_browser_that_cannot_be_installed_stops_at_once_with_the_command():
    started = time.monotonic()
    result = run_prerequisites(CHROMIUM="/nonexistent/chromium", APT_GET="false")
    assert result.returncode == 1
    assert "run: sudo apt-get install -y chromium" in result.stderr
    assert time.monotonic() - started < 10


def test_with_everything_in_place_it_does_nothing_quickly():
    started = time.monotonic()
    result = run_prerequisites(APT_GET="false")  # an install attempt would fail the run
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stdout and "starting" not in result.stdout
    assert time.monotonic() - started < 5
