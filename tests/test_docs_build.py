"""Tests that the Sphinx documentation builds offline with warnings as errors, and of its local inventories."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BUILD_TIMEOUT_S = 600


def _require_sphinx() -> None:
    if importlib.util.find_spec("sphinx") is None:
        pytest.skip("sphinx is not installed: install the docs extra (pip install -e '.[docs]')")


def _sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-b", "html", "-q", "-d", str(out / ".doctrees"), str(source),
         str(out)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )


def _read_inventory(path: Path) -> dict[tuple[str, str], str]:
    data = path.read_bytes()
    lines = data.split(b"\n", 4)
    assert lines[0] == b"# Sphinx inventory version 2"
    assert b"zlib" in lines[3]
    entries = {}
    for line in zlib.decompress(lines[4]).decode().splitlines():
        name, role, _priority, uri, _display = line.split(" ", 4)
        entries[(name, role)] = uri.replace("$", name) if uri.endswith("$") else uri
    return entries


def test_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    """`sphinx-build -W -b html docs` succeeds offline and renders the API pages, interfaces included."""
    _require_sphinx()
    result = _sphinx_build(DOCS, tmp_path / "html")
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-5000:]}"
    html = tmp_path / "html"
    for page in ("index", "api", "migration", "interop_4x", "tls", "embedding", "comm_state", "store", "operations"):
        assert (html / f"{page}.html").exists(), page
    interfaces = (html / "api" / "gwproactor.interfaces.html").read_text()
    assert "IActor" in interfaces and "receive" in interfaces
    # intersphinx resolved a Twisted name from the local inventory
    assert "https://docs.twisted.org/en/stable/api/twisted.application.service.IService.html" in interfaces


def test_docs_build_fails_on_broken_pages(tmp_path: Path) -> None:
    """With the same conf.py, an autodoc import failure and a page outside every toctree fail the build."""
    _require_sphinx()
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(DOCS / "conf.py", src / "conf.py")
    shutil.copytree(DOCS / "_inventories", src / "_inventories")
    (src / "index.rst").write_text("Index\n=====\n\n.. toctree::\n\n   broken\n")
    (src / "broken.rst").write_text("Broken\n======\n\n.. automodule:: gwproactor.no_such_module\n")
    (src / "orphan.rst").write_text("Orphan\n======\n\nIn no toctree.\n")
    result = _sphinx_build(src, tmp_path / "html")
    assert result.returncode != 0
    assert "no_such_module" in result.stderr


def test_twisted_inventory_uses_pydoctor_layout() -> None:
    """The committed twisted.inv maps modules and classes to api/<name>.html and members to anchors."""
    entries = _read_inventory(DOCS / "_inventories" / "twisted.inv")
    assert entries[("twisted.internet.defer", "py:module")] == "api/twisted.internet.defer.html"
    assert entries[("twisted.internet.defer.Deferred", "py:class")] == "api/twisted.internet.defer.Deferred.html"
    assert (entries[("twisted.internet.defer.Deferred.addTimeout", "py:method")]
            == "api/twisted.internet.defer.Deferred.html#addTimeout")
    assert (entries[("twisted.internet.endpoints.clientFromString", "py:function")]
            == "api/twisted.internet.endpoints.html#clientFromString")
    assert (entries[("twisted.internet.interfaces.IReactorTime", "py:class")]
            == "api/twisted.internet.interfaces.IReactorTime.html")
    assert ("twisted.application.service.MultiService", "py:class") in entries
    assert ("twisted.internet.task.Clock", "py:class") in entries
    assert ("twisted.python.failure.Failure", "py:exception") in entries  # a BaseException subclass
    assert not any(name.startswith("twisted.internet.reactor") for name, _ in entries)
    assert not any("._" in name or ".test." in name for name, _ in entries)


def test_python_inventory_uses_docs_python_layout() -> None:
    """The committed python.inv maps builtins and the listed stdlib names to docs.python.org pages."""
    entries = _read_inventory(DOCS / "_inventories" / "python.inv")
    assert entries[("str", "py:class")] == "library/stdtypes.html#str"
    assert entries[("ValueError", "py:exception")] == "library/exceptions.html#ValueError"
    assert entries[("pathlib.Path", "py:class")] == "library/pathlib.html#pathlib.Path"
    assert entries[("os.environ", "py:data")] == "library/os.html#os.environ"


def test_inventory_script_reproduces_the_committed_files(tmp_path: Path) -> None:
    """make_twisted_inventory.py regenerates the committed inventories byte for byte (same Twisted/Python)."""
    import twisted

    committed = (DOCS / "_inventories" / "twisted.inv").read_bytes()
    if f"# Version: {twisted.__version__}\n".encode() not in committed:
        pytest.skip(f"the committed twisted.inv was made from another Twisted than {twisted.__version__}")
    if f"# Version: {sys.version_info.major}.{sys.version_info.minor}\n".encode() not in (
        DOCS / "_inventories" / "python.inv"
    ).read_bytes():
        pytest.skip("the committed python.inv was made with another Python version")
    result = subprocess.run(
        [sys.executable, str(DOCS / "make_twisted_inventory.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _read_inventory(tmp_path / "twisted.inv") == _read_inventory(DOCS / "_inventories" / "twisted.inv")
    assert _read_inventory(tmp_path / "python.inv") == _read_inventory(DOCS / "_inventories" / "python.inv")
