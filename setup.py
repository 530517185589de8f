"""Setuptools shim; metadata lives in setup.cfg.  What is here is how ``twist gwproactor`` finds its plugin.

Twisted finds ``twist`` / ``twistd`` plugins as modules of the ``twisted.plugins`` package, whose path is every
``twisted/plugins`` directory on ``sys.path``.  The plugin module is ``dropin/twisted/plugins/gwproactor_plugin.py``:

* a regular install (a wheel) puts it into Twisted's own ``twisted/plugins`` directory (the ``twisted.plugins``
  entry of ``packages`` below, read from ``dropin/``);
* an editable install (``pip install -e .``) cannot: modern setuptools exposes the packages through an import
  hook, not through ``sys.path``, and Twisted never asks an import hook.  So the editable wheel also gets a
  ``.pth`` file that puts ``dropin/`` (which holds nothing but ``twisted/plugins/gwproactor_plugin.py``) on
  ``sys.path``.  It goes with the install: ``pip uninstall`` removes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from setuptools import find_packages, setup

DROPIN = "dropin"

try:  # setuptools >= 64 (PEP 660 editable installs; pyproject.toml requires it)
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # pragma: no cover - an old setuptools: the legacy editable install puts the checkout on sys.path
    cmdclass: dict[str, Any] = {}
else:

    class _DropinPath:
        """Wraps setuptools' editable strategy: it also writes a ``.pth`` putting ``dropin/`` on ``sys.path``."""

        def __init__(self, strategy: Any, name: str, path: Path) -> None:
            self._strategy = strategy
            self._name = name
            self._path = path

        def __enter__(self) -> _DropinPath:
            self._strategy.__enter__()
            return self

        def __exit__(self, *exc: Any) -> Any:
            return self._strategy.__exit__(*exc)

        def __call__(self, wheel: Any, files: Any, mapping: Any) -> Any:
            result = self._strategy(wheel, files, mapping)
            wheel.writestr(f"__editable__.{self._name}.twisted_plugins.pth", f"{self._path}\n".encode())
            return result

    class _EditableWheel(editable_wheel):
        """``editable_wheel`` whose wheel also makes the Twisted plugin findable (see the module docstring)."""

        def _select_strategy(self, name: str, tag: str, build_lib: Any) -> Any:
            strategy = super()._select_strategy(name, tag, build_lib)
            return _DropinPath(strategy, name, Path(self.project_dir, DROPIN).resolve())

    cmdclass = {"editable_wheel": _EditableWheel}

setup(
    packages=find_packages(include=["gwproactor", "gwproactor.*", "gwproactor_test", "gwproactor_test.*"])
    + ["twisted.plugins"],
    package_dir={"twisted.plugins": f"{DROPIN}/twisted/plugins"},
    cmdclass=cmdclass,
)
