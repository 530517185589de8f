"""An example of a project derived from gwproactor that tests its own proactors with gwproactor_test's suites."""
