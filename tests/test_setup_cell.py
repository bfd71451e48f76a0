"""The notebooks' shared setup cell: silent outside Colab, loud when the install fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def _setup_source() -> str:
    nb = nbformat.read(ROOT / "solutions" / "ch00_how_to_use.ipynb", as_version=4)
    return nb.cells[0].source


def _run(source: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RLDEBUG_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_does_nothing_outside_colab():
    result = _run(_setup_source())
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_failed_install_raises_a_readable_error(tmp_path):
    missing = tmp_path / "no-such-package"
    result = _run(
        _setup_source(), RLDEBUG_FORCE_SETUP="1", RLDEBUG_SOURCE=str(missing), PIP_NO_INDEX="1"
    )
    assert result.returncode != 0
    assert "RuntimeError: Installing the course package from" in result.stderr
    assert "failed (pip exit code" in result.stderr


def test_setup_cell_names_the_repository_from_config():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] in _setup_source()
