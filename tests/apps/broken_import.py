"""Importing this module fails on a *nested* missing module (not the app module itself)."""

import ferrocorn_tests_nonexistent_dependency  # noqa: F401

app = None
