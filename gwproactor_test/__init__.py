"""gwproactor_test: live-test helpers for gwproactor and projects derived from it.

Private Mosquitto brokers, generated certificates, a fault proxy, pair/tree helpers, reusable suites, a pytest
plugin, and the run of ``gwproactor demo`` (:mod:`gwproactor_test.demo`).  It builds on the library, which never
imports it.  The pytest plugin (:mod:`gwproactor_test.plugin`) needs the ``test`` extra; the demo and the
helpers it uses (broker, proxy, process, certificates) do not.
"""
