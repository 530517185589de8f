"""Sphinx configuration of the gwproactor documentation.

The build works offline: intersphinx reads the inventories in ``_inventories/`` (written by
``make_twisted_inventory.py``), and unresolved cross-references are not errors (``nitpicky = False``), while
malformed reST, documents missing from the toctree and modules autodoc cannot import fail ``sphinx-build -W``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # document the working tree even if it is not installed

from gwproactor._version import __version__  # noqa: E402

project = "gwproactor"
author = "gwproactor contributors"
copyright = "gwproactor contributors"  # noqa: A001 - Sphinx's name
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
]

root_doc = "index"
exclude_patterns = ["_build", "_inventories", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_theme = "alabaster"
html_static_path: list[str] = []

# --- autodoc ------------------------------------------------------------------------------------------------
# Type hints go into the parameter descriptions: signatures stay readable, and annotation references that
# cannot be resolved stay plain text instead of failing the build.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autodoc_class_signature = "separated"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_inherit_docstrings = False  # do not copy Twisted's epytext docstrings into our pages
autodoc_warningiserror = True

# --- intersphinx (offline) ----------------------------------------------------------------------------------
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", str(HERE / "_inventories" / "python.inv")),
    "twisted": ("https://docs.twisted.org/en/stable/", str(HERE / "_inventories" / "twisted.inv")),
}
intersphinx_timeout = 1
intersphinx_disabled_reftypes = ["std:doc"]
nitpicky = False  # an unresolved reference renders as plain text, not a warning

# --- HTML ---------------------------------------------------------------------------------------------------
html_title = f"gwproactor {release}"
html_theme_options = {
    "description": "A Twisted framework for SCADA processes",
    "fixed_sidebar": False,
}


# --- zope.interface: document interfaces -------------------------------------------------------------------
# autodoc ignores zope.interface ``InterfaceClass`` objects (they are not classes), so ``autointerfaces``
# writes one ``py:class`` per interface of a module, with its methods and attributes, from the interface's own
# description. automodule skips interfaces so they are not documented twice.


def _is_interface(obj: object) -> bool:
    from zope.interface.interface import InterfaceClass

    return isinstance(obj, InterfaceClass)


def _skip_interfaces(app, what, name, obj, skip, options):  # noqa: ANN001, ANN202 - Sphinx event signature
    return True if _is_interface(obj) else None


def _interface_lines(iface) -> list[str]:  # noqa: ANN001
    from zope.interface.interface import Method

    lines = [f".. py:class:: {iface.__name__}", f"   :module: {iface.__module__}", ""]
    bases = [b for b in iface.__bases__ if b.__name__ != "Interface"]
    kind = "Interface" + (
        "; extends " + ", ".join(f":class:`{b.__module__}.{b.__name__}`" for b in bases) if bases else ""
    )
    lines += [f"   {kind}.", ""]
    lines += ["   " + line for line in inspect.cleandoc(iface.__doc__ or "").splitlines()] + [""]
    for name, desc in iface.namesAndDescriptions(all=False):
        if isinstance(desc, Method):
            lines.append(f"   .. py:method:: {name}{desc.getSignatureString()}")
        else:
            lines.append(f"   .. py:attribute:: {name}")
        lines.append("")
        doc = inspect.cleandoc(desc.getDoc() or "")
        lines += ["      " + line for line in doc.splitlines()] + [""]
    return lines


def setup(app):  # noqa: ANN001, ANN201 - Sphinx extension entry point
    """Register ``autointerfaces`` and the autodoc hook that skips interfaces."""
    import importlib

    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class AutoInterfaces(SphinxDirective):
        """``.. autointerfaces:: MODULE``: document every zope.interface interface defined in MODULE."""

        required_arguments = 1

        def run(self):  # noqa: ANN202
            module = importlib.import_module(self.arguments[0])
            self.env.note_dependency(inspect.getsourcefile(module))
            lines: list[str] = []
            for obj in vars(module).values():
                if _is_interface(obj) and obj.__module__ == module.__name__:
                    lines += _interface_lines(obj)
            container = nodes.container()
            nested_parse_with_titles(self.state, StringList(lines, source=f"<autointerfaces {module.__name__}>"),
                                     container)
            return container.children

    app.add_directive("autointerfaces", AutoInterfaces)
    app.connect("autodoc-skip-member", _skip_interfaces)
    return {"parallel_read_safe": True}
