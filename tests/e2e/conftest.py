"""End-to-end tests: the book in a browser, the Colab path and the instructor's nbgrader path.

All of them carry the ``e2e`` marker (``-m "not e2e"`` leaves them out). The book build is
the slow part (it executes every notebook, cached in _build/.jupyter_cache): when the run
includes a test that needs it, it starts in the background as soon as collection is done,
and the e2e tests are moved to the end of the run, so the build overlaps the other tests.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
BUILD_LOG = BUILD / "e2e-book-build.log"
SCREENSHOTS = BUILD / "screenshots"
CHROMIUM = Path(os.environ.get("RLDEBUG_CHROMIUM", "/usr/bin/chromium"))
BIN = Path(sys.executable).parent

_BUILD: dict[str, object] = {}
# A book already built (for instance by scripts/build_book.sh): the browser tests read it as it
# is, instead of building the book again. Unset, the tests build it themselves.
PREBUILT = os.environ.get("RLDEBUG_BOOK_HTML")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: end-to-end tests (browser, Colab path, nbgrader path); slow"
    )


def _in_e2e(item) -> bool:
    return Path(str(item.path)).is_relative_to(Path(__file__).parent)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if _in_e2e(item)]
    for item in ours:
        item.add_marker(pytest.mark.e2e)
    # Run last, so that the background book build overlaps everything else.
    items[:] = [item for item in items if not _in_e2e(item)] + ours


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    if any("book_html" in getattr(item, "fixturenames", ()) for item in session.items):
        _start_book_build()


def pytest_unconfigure(config):
    process = _BUILD.get("process")
    if isinstance(process, subprocess.Popen) and process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


# ---------------------------------------------------------------------------- the book


def _start_book_build() -> None:
    if "process" in _BUILD or PREBUILT:
        return
    BUILD.mkdir(exist_ok=True)
    log = BUILD_LOG.open("w")
    command = [str(BIN / "jupyter-book"), "build", ".", "--builder", "html", "-W", "-n"]
    # --all: every page is read again (notebooks still come from the execution cache), so the
    # HTML always matches the cache and the config.
    command += ["--keep-going", "--all"]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    # Kernels must draw inline: with MPLBACKEND=Agg (scripts/venv.sh) plt.show() draws nothing
    # and the book would have no figures.
    env.pop("MPLBACKEND", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    _BUILD["started"] = time.perf_counter()
    _BUILD["process"] = subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    log.close()


def toc_files() -> list[str]:
    """Every page of the book, in reading order, as paths without suffix (from _toc.yml)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(str(Path(entry["file"]).with_suffix("")))
            for key in ("chapters", "sections"):
                walk(entry.get(key))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def toc_numbered() -> bool:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = toc.get("parts", []) or []
    return bool(toc.get("numbered")) or any(part.get("numbered") for part in parts)


def repository() -> tuple[str, str]:
    """(owner/name, branch) of the repository, from _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"].rstrip("/")
    return url.split("github.com/", 1)[1], config["repository"].get("branch", "main")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture(scope="session")
def book_html() -> Path:
    """The book built with warnings as errors (started in the background at collection)."""
    if PREBUILT:
        html = Path(PREBUILT)
        assert (html / "index.html").exists(), f"RLDEBUG_BOOK_HTML={PREBUILT}: no index.html"
        return html
    _start_book_build()
    process = _BUILD["process"]
    assert isinstance(process, subprocess.Popen)
    returncode = process.wait()
    seconds = time.perf_counter() - float(_BUILD["started"])
    print(f"\nbook build: {seconds:.0f} s (wall-clock, overlapping other tests)")
    log = BUILD_LOG.read_text(errors="replace")
    assert returncode == 0, f"the book build failed (exit {returncode}):\n{log[-6000:]}"
    assert (HTML / "index.html").exists()
    return HTML


@pytest.fixture(scope="session")
def book_server(book_html):
    """Serves _build/html on 127.0.0.1 (a free port) while the session runs."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home and, in a closed network, gets connection errors.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: run `bash scripts/e2e_prereqs.sh` (as root it installs "
            "Debian's chromium), or set RLDEBUG_CHROMIUM to a Chromium binary"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS
