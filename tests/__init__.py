"""gwproactor's tests (a package so that ``python -m twisted.trial tests.derived_example`` can import them)."""
