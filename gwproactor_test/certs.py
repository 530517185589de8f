"""The certificate set of the live tests (:class:`TestCerts`), built with :mod:`gwproactor.certs`.

:class:`~gwproactor.certs.CertPair`, :func:`~gwproactor.certs.make_ca`, :func:`~gwproactor.certs.make_cert`,
:func:`~gwproactor.certs.write_trust_dir` and :data:`~gwproactor.certs.DEFAULT_VALIDITY_DAYS` moved to
:mod:`gwproactor.certs` (library code); they are re-exported here so existing imports keep working.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from gwproactor.certs import DEFAULT_VALIDITY_DAYS, CertPair, make_ca, make_cert, write_trust_dir

__all__ = [
    "DEFAULT_VALIDITY_DAYS",
    "CertPair",
    "TestCerts",
    "make_ca",
    "make_cert",
    "make_test_certs",
    "write_trust_dir",
]


@attrs.frozen
class TestCerts:
    """The certificate set used by live tests.

    :ivar directory: where every file lives.
    :ivar ca: the CA trusted by the private broker.
    :ivar broker: server certificate for DNS ``localhost`` and IP ``127.0.0.1``, signed by ``ca``.
    :ivar client: client certificate signed by ``ca``.
    :ivar other_ca: an unrelated CA.
    :ivar other_client: client certificate signed by ``other_ca`` (a broker trusting ``ca`` must refuse it).
    :ivar trust_dir: a directory holding only ``ca``'s certificate as ``ca.pem``, the form Twisted's ``tls:``
        endpoint option ``trustRoots=`` expects.
    """

    __test__ = False  # not a pytest test class despite the name

    directory: Path
    ca: CertPair
    broker: CertPair
    client: CertPair
    other_ca: CertPair
    other_client: CertPair
    trust_dir: Path


def make_test_certs(directory: Path, *, validity_days: int = DEFAULT_VALIDITY_DAYS) -> TestCerts:
    """Generate the full :class:`TestCerts` set into ``directory``."""
    directory = Path(directory)
    ca = make_ca(directory, "ca", validity_days=validity_days)
    other_ca = make_ca(directory, "other_ca", validity_days=validity_days)
    return TestCerts(
        directory=directory,
        ca=ca,
        broker=make_cert(
            ca,
            directory,
            "broker",
            dns=("localhost",),
            ips=("127.0.0.1",),
            server=True,
            validity_days=validity_days,
        ),
        client=make_cert(ca, directory, "client", server=False, validity_days=validity_days),
        other_ca=other_ca,
        other_client=make_cert(
            other_ca, directory, "other_client", server=False, validity_days=validity_days
        ),
        trust_dir=write_trust_dir(ca, directory / "trust"),
    )
