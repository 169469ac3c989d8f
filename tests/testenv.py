"""Where the tests find their databases, from the environment; imported by conftest.py and by
tests that need the same values (never ``from conftest import``: tests/cli has a conftest too)."""

from __future__ import annotations

import os

#: The PostgreSQL server the tests create their databases on.
PG_SERVER = os.environ.get("DSNOTEBOOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
#: The backends every backend-parametrised test runs on.
BACKENDS = tuple(os.environ.get("DSNOTEBOOK_TEST_BACKENDS", "sqlite,postgresql").split(","))
