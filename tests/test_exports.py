"""The package's public surface: every exported name exists, is the module's object, and is documented."""

from __future__ import annotations

import subprocess
import sys

import gwproactor


def test_exports_resolve_and_have_docstrings() -> None:
    """Every name in gwproactor.__all__ resolves and (classes and functions) carries a docstring."""
    for name in gwproactor.__all__:
        obj = getattr(gwproactor, name)
        if callable(obj):
            assert obj.__doc__, f"gwproactor.{name} has no docstring"


def test_import_does_not_install_a_reactor() -> None:
    """Importing gwproactor (and its runner) leaves the reactor choice open: no global reactor is imported."""
    code = (
        "import sys, gwproactor, gwproactor.runner, gwproactor.twist, gwproactor_test.plugin;"
        "print('twisted.internet.reactor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"


def test_package_root_imports_its_names_on_first_use() -> None:
    """``import gwproactor`` imports no library module but the version; each exported name imports on first use."""
    code = (
        "import sys, gwproactor;"
        "before = sorted(m for m in sys.modules if m.startswith('gwproactor'));"
        "gwproactor.Proactor;"
        "print(before, 'gwproactor.proactor' in sys.modules, set(gwproactor.__all__) <= set(dir(gwproactor)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "['gwproactor', 'gwproactor._version'] True True"


def test_moved_names_are_still_importable_from_their_old_modules() -> None:
    """The shims of the layering move: certificates, the demo, the settings loader and the version."""
    import gwproactor._version
    import gwproactor.certs
    import gwproactor.config
    import gwproactor.demo.cli
    import gwproactor.demo.report
    import gwproactor_test.certs
    import gwproactor_test.demo

    for name in ("CertPair", "make_ca", "make_cert", "write_trust_dir", "DEFAULT_VALIDITY_DAYS"):
        assert getattr(gwproactor_test.certs, name) is getattr(gwproactor.certs, name)
    for name in ("DemoConfig", "DemoSummary", "EXIT_OK", "add_demo_arguments", "endpoint_via_proxy"):
        assert getattr(gwproactor.demo.cli, name) is getattr(gwproactor.demo.report, name)
    for name in ("DemoRun", "run_demo"):
        assert getattr(gwproactor.demo.cli, name) is getattr(gwproactor_test.demo, name)
    assert callable(gwproactor.config.load_settings) and callable(gwproactor.config.parse_dotenv)
    assert gwproactor.__version__ == gwproactor._version.__version__


def test_root_all_matches_its_lazy_names() -> None:
    """gwproactor.__all__ lists exactly the lazily imported names and the version."""
    assert sorted(gwproactor.__all__) == sorted([*gwproactor._WHERE, "__version__"])
