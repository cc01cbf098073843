"""The separate TensorFlow + tensorflow_hub environment the interop tests run code in.

``HUBCACHE_TF_PYTHON`` names its interpreter (``.ci/tf-env.sh`` builds it and prints it);
without it the interop tests skip, saying how to get one. A script run there reports by
printing one ``RESULT {json}`` line, so TensorFlow's own chatter on stdout never matters.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

TF_PYTHON = os.environ.get("HUBCACHE_TF_PYTHON", "")
REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
SAMPLE_MODEL = SRC / "hubcache" / "_data" / "sample_model"
# What the sample model computes for x = [1, 2, 3], and its asset: the tests' proof of a load.
SAMPLE_EXPECTED = {"y": [1.5, 4.5, 9.5], "total": 15.5, "labels": "sample\nmodel\n"}


def interop_marks(timeout: int) -> list[pytest.MarkDecorator]:
    """``pytestmark`` of an interop module: marked, bounded, skipped without the env."""
    return [
        pytest.mark.interop,
        pytest.mark.timeout(timeout),
        pytest.mark.skipif(
            not TF_PYTHON,
            reason="HUBCACHE_TF_PYTHON is unset: set it to the python of the tensorflow + "
            "tensorflow_hub env, e.g. export HUBCACHE_TF_PYTHON=$(bash .ci/tf-env.sh | tail -1)",
        ),
    ]


def run_result(
    script: str,
    args: list[str],
    env: dict[str, str],
    timeout: float,
    what: str,
    *,
    python: str = "",
) -> tuple[dict[str, Any], str]:
    """Run ``script`` with ``python`` (default: the TF env's); its last RESULT line, and its
    stderr. A failure shows the ends of both streams, since TensorFlow's reason is usually
    at the end."""
    with tempfile.TemporaryDirectory(prefix="tf-child-") as tmp:
        # TensorFlow writes its own files (autograph's generated modules) into the temp
        # folder and leaves them: give it one that goes when the child does.
        proc = subprocess.run(
            [python or TF_PYTHON, "-c", script, *args],
            env={"TMPDIR": tmp, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"{what} failed (exit {proc.returncode})\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
    )
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result, proc.stderr
