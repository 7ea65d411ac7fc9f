"""The built docs site as a reader sees it: headless Chromium at 1280 px wide.

Checks that the content column is wide, that the benchmark figures load and fill it, and that
the code blocks of the first pages a user reads do not scroll; takes a screenshot of the
benchmarks page (kept in ``$PARAMARENA_SCREENSHOT_DIR`` when set: the docs nox session writes
``build/screenshots/``). Skipped where Chromium or mkdocs is not installed; on Debian or
Ubuntu ``apt-get install chromium`` provides it.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 1280
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((found for name in BROWSERS if (found := shutil.which(name))), None)

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs mkdocs"),
]

MEASURE = """<script>
window.addEventListener("load", () => {
  const box = (e) => e.getBoundingClientRect();
  const out = {
    content: box(document.querySelector(".md-content__inner")).width,
    images: [...document.querySelectorAll(".md-content img")].map((i) => ({
      src: i.getAttribute("src"), width: box(i).width, natural: i.naturalWidth,
    })),
    scrolling: [...document.querySelectorAll(".md-content pre > code")]
      .filter((c) => c.scrollWidth > c.clientWidth + 1)
      .map((c) => c.textContent.split("\\n").find((l) => l.length > 60) || c.textContent),
  };
  const pre = document.createElement("pre");
  pre.id = "paramarena-measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site in ``$PARAMARENA_SITE_DIR`` (already built), else a fresh strict build."""
    given = os.environ.get("PARAMARENA_SITE_DIR")
    if given and (Path(given) / "index.html").exists():
        return Path(given)
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def measure(site: Path, page: str) -> dict[str, Any]:
    """Load ``page`` (e.g. ``benchmarks``) at 1280 px and return the sizes the script reports."""
    original = site / page / "index.html"
    probe = original.with_name("paramarena-measure.html")  # same folder: same relative links
    probe.write_text(
        original.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"),
        encoding="utf-8",
    )
    try:
        proc = chromium(f"--window-size={WIDTH},900", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = re.search(r'<pre id="paramarena-measure">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no measurement from chromium: {proc.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.timeout(600)
def test_benchmark_figures_fill_a_wide_column(site: Path) -> None:
    sizes = measure(site, "benchmarks")
    assert sizes["content"] >= 900, f"content column only {sizes['content']:.0f} px at {WIDTH}"
    figures = [i for i in sizes["images"] if "bench-" in (i["src"] or "")]
    assert figures, "the benchmarks page shows no figure"
    for figure in figures:
        assert figure["natural"] > 0, f"{figure['src']} did not load"
        # drawn at 150 dpi for 9 in: shown at >= 0.6 of that, its 9.5 pt labels are >= 12 px
        assert 0.6 * figure["natural"] <= figure["width"] <= sizes["content"] + 1, figure


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", ["", "quickstart", "interop"])
def test_code_blocks_of_the_first_pages_do_not_scroll(site: Path, page: str) -> None:
    sizes = measure(site, page) if page else measure_home(site)
    assert sizes["scrolling"] == [], f"code lines too wide for the column: {sizes['scrolling']}"


def measure_home(site: Path) -> dict[str, Any]:
    """The home page is ``site/index.html``: probe it from a folder of its own."""
    home = site / "paramarena-home"
    home.mkdir(exist_ok=True)
    try:
        text = (site / "index.html").read_text(encoding="utf-8")
        # one level deeper: rewrite the relative links the home page uses
        text = re.sub(r'(href|src)="(?!https?:|#|/|data:)', r'\1="../', text)
        (home / "index.html").write_text(text, encoding="utf-8")
        return measure(site, "paramarena-home")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(600)
def test_screenshot_of_the_benchmarks_page(site: Path, tmp_path: Path) -> None:
    keep = os.environ.get("PARAMARENA_SCREENSHOT_DIR")
    folder = Path(keep) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / f"benchmarks-{WIDTH}px.png"
    page = (site / "benchmarks" / "index.html").as_uri()
    proc = chromium(f"--window-size={WIDTH},4200", f"--screenshot={shot}", page)
    assert shot.exists(), proc.stderr[-2000:]
    assert png_size(shot) == (WIDTH, 4200)
