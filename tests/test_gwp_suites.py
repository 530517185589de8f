"""Our own run of the reusable live suites (gwproactor_test.suites) against the dummy proactors."""

from __future__ import annotations

import pytest

from gwproactor_test import suites

pytestmark = pytest.mark.live


class TestDummyPair(suites.PairSuites):
    """Every pair suite against DummyChild / DummyParent over the plain listener."""


class TestDummyPairTLS(suites.BasicCommSuite):
    """Basic comm against the dummies over the mutual-TLS listener."""

    tls = True


class TestDummyTree(suites.TreeSuite):
    """Tree forwarding against DummyScada2 → DummyScada1 → DummyAtn."""
