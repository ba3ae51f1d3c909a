"""Importing this module raises."""

raise RuntimeError("import-boom from tests.apps.raises_on_import")
