"""A fresh-clone-like copy of the repository: the files git would commit (tracked, and untracked ones that are
not ignored), so no data/, runs/ or .venv."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def copy_repo(dest: Path) -> Path:
    """``git ls-files | tar`` of the working tree into ``dest`` (modification times kept); skips the test when
    git, tar or make is missing or this is not a git checkout."""
    if not all(shutil.which(tool) for tool in ("git", "tar", "make")) or not (REPO / ".git").exists():
        pytest.skip("needs git, tar, make and a git checkout")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    present = b"\0".join(name for name in files.split(b"\0") if name and (REPO / name.decode()).exists())
    dest.mkdir(parents=True, exist_ok=True)
    pack = subprocess.run(["tar", "-cf", "-", "--null", "-T", "-"], cwd=REPO, input=present, capture_output=True)
    assert pack.returncode == 0, pack.stderr.decode()[-2000:]
    subprocess.run(["tar", "-xf", "-"], cwd=dest, input=pack.stdout, check=True)
    return dest
