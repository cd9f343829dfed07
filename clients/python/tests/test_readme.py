"""Every Python example of the client's README runs, as written, against a real service
of the bundled skills (the client finds it through SKILLHOST_SERVER)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_each_readme_example_runs(bundled_service, example):
    env = {**os.environ, "SKILLHOST_SERVER": bundled_service.server}
    ran = subprocess.run([sys.executable, "-c", example], env=env, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, f"{example}\n--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"
    assert ran.stdout.strip(), "every example prints what it shows"
