"""Where the tests find their databases, from the environment; imported by conftest.py and by
tests that need the same values (never ``from conftest import``: tests/cli has a conftest too)."""

from __future__ import annotations

import os

#: The PostgreSQL server the tests create their databases on.
PG_SERVER = os.environ.get("DSNOTEBOOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
#: The backends every backend-parametrised test runs on.
BACKENDS = tuple(os.environ.get("DSNOTEBOOK_TEST_BACKENDS", "sqlite,postgresql").split(","))


def _examples_share() -> float:
    raw = os.environ.get("DSNOTEBOOK_TEST_EXAMPLES", "1")
    try:
        share = float(raw)
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise ValueError(f"DSNOTEBOOK_TEST_EXAMPLES={raw!r}: expected a share of the examples, above 0 and at most 1, such as 0.3")
    return share


#: The share of each core property test's examples to run: all of them, unless
#: ``DSNOTEBOOK_TEST_EXAMPLES`` says less. CI's side jobs, which run the core suite again on the
#: oldest versions and on Python 3.13, run 0.3 of them: the main job explores every property in
#: full, the side jobs check that each holds on their versions.
EXAMPLES_SHARE = _examples_share()


def examples(n: int) -> int:
    """``n`` examples, scaled by :data:`EXAMPLES_SHARE`; never fewer than 10."""
    return max(10, round(n * EXAMPLES_SHARE))
