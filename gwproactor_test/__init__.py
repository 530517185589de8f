"""gwproactor_test: live-test helpers for gwproactor and projects derived from it.

Private Mosquitto brokers, generated certificates, a fault proxy, pair/tree helpers
and a pytest plugin.
"""
