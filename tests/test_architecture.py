"""The wings of the package import only the wings below them (docs/architecture.md).

The same rule is an import-linter contract in ``pyproject.toml`` (``nox -s lint``); this test
checks it with the standard library alone so that every test session enforces it, and checks in
fresh interpreters that each wing imports on its own and that ``import paramarena`` stays light.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "paramarena"

#: wing -> the wings it must never import (imports under ``if TYPE_CHECKING:`` do not count).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "errors": (
        "hooks",
        "kernels",
        "devices",
        "storage",
        "init",
        "params",
        "distributed",
        "testing",
        "cli",
    ),
    "hooks": (
        "kernels",
        "devices",
        "storage",
        "init",
        "params",
        "distributed",
        "testing",
        "cli",
        "demo",
    ),
    "kernels": (
        "hooks",
        "devices",
        "storage",
        "init",
        "params",
        "distributed",
        "testing",
        "cli",
        "demo",
    ),
    "devices": ("storage", "init", "params", "distributed", "testing", "cli", "demo"),
    "storage": ("devices", "init", "params", "distributed", "testing", "cli", "demo"),
    "init": ("params", "distributed", "testing", "cli", "demo"),
    "params": ("distributed", "testing", "cli", "demo"),
    "distributed": ("testing", "cli", "demo"),
}

WINGS = [
    "errors",
    "hooks",
    "kernels",
    "devices",
    "storage",
    "init",
    "params",
    "distributed",
    "testing",
]


def _modules_of(wing: str) -> list[Path]:
    path = PACKAGE / wing
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _runtime_imports(path: Path) -> set[str]:
    """Return the ``paramarena.*`` modules ``path`` imports at run time (lazy imports included)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m.startswith("paramarena.")}


@pytest.mark.parametrize("wing", sorted(FORBIDDEN))
def test_wing_imports_only_wings_below_it(wing: str) -> None:
    offending = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in _modules_of(wing)
        for module in sorted(_runtime_imports(path))
        if module.split(".")[1] in FORBIDDEN[wing]
    ]
    assert not offending, "\n".join(offending)


def test_every_module_is_inside_a_wing_or_the_public_face() -> None:
    top_level = {p.stem for p in PACKAGE.glob("*.py")}
    assert top_level == {"__init__", "__main__", "errors", "cli", "demo", "resnet50"}
    wings = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert wings == {
        "hooks",
        "kernels",
        "devices",
        "init",
        "storage",
        "params",
        "distributed",
        "testing",
    }


def test_no_module_is_over_600_lines() -> None:
    long = [
        f"{p.relative_to(PACKAGE)}: {n}"
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    ]
    assert not long, long


def _fresh(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("wing", WINGS)
def test_each_wing_imports_in_a_fresh_interpreter(wing: str) -> None:
    assert _fresh(f"import paramarena.{wing}; print('ok')") == "ok"


def test_import_is_light_and_storage_is_reachable_as_an_attribute() -> None:
    code = (
        "import sys, paramarena as pa\n"
        "heavy = [m for m in ('numba', 'zarr', 'paramarena.storage') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(pa.storage.load) and 'paramarena.storage' in sys.modules\n"
        "assert pa.testing.StorageTests is not None\n"
        "print('ok')\n"
    )
    assert _fresh(code) == "ok"


def test_builtin_plugins_are_imported_when_the_manager_is_built() -> None:
    code = (
        "import sys\n"
        "from paramarena.hooks import manager\n"
        "assert 'paramarena.storage.zarr.backend' not in sys.modules\n"
        "manager.get_plugin_manager()\n"
        "assert all(m in sys.modules for m in manager.BUILTIN_PLUGINS.values())\n"
        "print('ok')\n"
    )
    assert _fresh(code) == "ok"


def test_python_dash_m_runs_the_cli_and_reports_the_version() -> None:
    import paramarena

    out = subprocess.run(
        [sys.executable, "-m", "paramarena", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == f"paramarena {paramarena.__version__}"


def test_old_error_name_is_an_alias() -> None:
    import paramarena

    assert paramarena.ParamdictError is paramarena.ParamarenaError
