"""The wheel is the product: built from the package alone, installed into a fresh venv outside the repo, it runs.

The fresh venv gets the wheel only (--no-deps); its dependencies come from the test's own environment through
a path entry, and the build uses the dev environment's setuptools: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding only the wheel built from a copy of the package."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "extractor", src / "extractor", ignore=shutil.ignore_patterns("__pycache__"))
    # setuptools is a dev dependency, so the build needs no isolated environment (and no network)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(root / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (root / "dist").glob("extractor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "extractor/spec/default.json",
        "extractor/spec/gate.json",
        "extractor/prompts/extraction.local.txt",
        "extractor/prompts/extraction.openai.txt",
        "extractor/prompts/gate.local.txt",
        "extractor/prompts/gate.openai.txt",
    } <= names

    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    # The dependencies: this environment's site-packages as a plain path entry (its .pth files, among them the
    # editable install of the repo, are not read), after the venv's own, so `extractor` is the wheel's.
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin"


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["EXTRACTOR_JOBS_DIR"] = str(cwd / "jobs")
    return subprocess.run(
        [str(bin_dir / "extractor"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_installed_wheel_is_the_one_imported(installed: Path, tmp_path: Path) -> None:
    where = subprocess.check_output(
        [installed / "python", "-c", "import extractor; print(extractor.__file__)"], cwd=tmp_path, text=True
    )
    assert where.startswith(str(installed.parent)) and not where.startswith(str(REPO))
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("extractor ")


def test_schema_check_and_show_use_the_bundled_specs(installed: Path, tmp_path: Path) -> None:
    checked = run(installed, "schema", "check", "--json", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    data = json.loads(checked.stdout)
    assert data["ok"] and data["file"].startswith(str(installed.parent))
    shown = run(installed, "schema", "show", "gate", cwd=tmp_path)
    assert json.loads(shown.stdout) == json.loads((REPO / "extractor" / "spec" / "gate.json").read_text())
    (tmp_path / "mine.json").write_text(run(installed, "schema", "show", cwd=tmp_path).stdout)
    assert run(installed, "schema", "check", "mine.json", cwd=tmp_path).stdout == "mine.json: ok\n"


def test_prepare_runs_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "examples" / "docs", docs)
    prepared = run(installed, "prepare", "docs", "--json", cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr
    data = json.loads(prepared.stdout)
    assert data["documents"] == 20 and data["requests"] == 20
    manifest = json.loads((tmp_path / "jobs" / data["job_id"] / "job.json").read_text())
    assert manifest["spec"]["path"].startswith(str(installed.parent))
