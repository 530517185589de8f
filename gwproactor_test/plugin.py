"""pytest plugin of gwproactor_test (registered through the ``pytest11`` entry point)."""
