"""Developer tasks for paramarena: tests on every Python, CUDA simulator, S3, plugins, lint, docs.

``nox`` with no arguments runs the default sessions (what CI runs through ``.ci/run``).
``nox -s demo`` runs the demo, ``nox -s benchmarks`` the benchmarks (not in the default run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = ["3.11", "3.12", "3.13"]
PLUGINS = sorted(str(p) for p in (ROOT / "plugins").glob("*/pyproject.toml"))

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["tests", "cudasim", "s3", "plugins", "lint", "docs"]


def _expose_pyenv_interpreters() -> None:
    """Make every pyenv-installed CPython visible as python3.X (pyenv shims hide them)."""
    if shutil.which("pyenv") is None:
        return
    try:
        out = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return
    versions = [v.strip() for v in out.splitlines() if v.strip()[:1].isdigit()]
    wanted = [v for v in versions if any(v.startswith(p + ".") for p in PYTHONS)]
    if wanted:
        os.environ["PYENV_VERSION"] = ":".join(sorted(wanted, key=lambda v: v != "3.11.7"))
        # put the real interpreters (not the shims) on PATH so nox and uv both find them
        root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
        bins = [str(root / "versions" / v / "bin") for v in wanted]
        os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])


_expose_pyenv_interpreters()


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


def _plugin_dirs() -> list[str]:
    return [str(Path(p).parent) for p in PLUGINS]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the main test suite (no GPU, no CUDA simulator, no S3)."""
    session.install(".", *_group("test"))
    session.run("pytest", "-m", "not gpu and not cudasim and not s3", "tests", *session.posargs)


@nox.session(python="3.11")
def cudasim(session: nox.Session) -> None:
    """Run the GPU tests under Numba's CUDA simulator."""
    session.install(".[cuda]", *_group("test"))
    session.run(
        "pytest",
        "-m",
        "cudasim and not gpu",
        "tests/cuda",
        *session.posargs,
        env={"NUMBA_ENABLE_CUDASIM": "1"},
    )


@nox.session(python="3.11")
def gpu(session: nox.Session) -> None:
    """Run the tests that need a real CUDA GPU (not in the default run)."""
    session.install(".[cuda]", *_group("test"))
    session.run("pytest", "-m", "gpu or cudasim", "tests/cuda", *session.posargs)


@nox.session(python="3.11")
def s3(session: nox.Session) -> None:
    """Run the cloud tests against a local moto_server (started by a pytest fixture)."""
    session.install(".[s3]", *_group("test"))
    session.run("pytest", "-m", "s3", "tests/s3", *session.posargs)


@nox.session(python="3.11")
def plugins(session: nox.Session) -> None:
    """Install the core and every plugins/* package, then run their tests."""
    session.install(".", *_plugin_dirs(), *_group("test"))
    test_dirs = [d + "/tests" for d in _plugin_dirs() if Path(d, "tests").is_dir()]
    session.run("pytest", "-p", "no:cacheprovider", *test_dirs, *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff (lint + format check), mypy (strict) and the wings' import contract."""
    session.install("-e", ".[cuda,s3]", *_group("lint"), *_group("test"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors."""
    session.install(".", *_group("docs"))
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Install paramarena and run ``paramarena demo``."""
    session.install(".")
    session.run("paramarena", "demo", *session.posargs)


@nox.session(python="3.11", default=False)
def fuzz(session: nox.Session) -> None:
    """Fuzz every storage reader with >= 10,000 seeded mutated inputs per format (not default).

    ``nox -s fuzz -- --cases 2000 --formats npz`` runs a smaller or narrower campaign; the
    JSON summary lands in ``fuzz-report.json``.
    """
    session.install(".", str(ROOT / "plugins" / "paramarena-safetensors"), *_group("test"))
    args = session.posargs or ["--cases", "10000", "--timeout", "5"]
    session.run(
        "python",
        str(ROOT / "tests" / "fuzz" / "fuzz_harness.py"),
        *args,
        "--report",
        str(ROOT / "fuzz-report.json"),
    )


@nox.session(python="3.11", default=False)
def benchmarks(session: nox.Session) -> None:
    """Run the benchmarks and write the tables and plot under docs/."""
    session.install(".[s3]", *_group("bench"), *_group("test"))
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
    if (ROOT / "benchmarks" / "plot.py").exists():
        session.run("python", str(ROOT / "benchmarks" / "plot.py"))
