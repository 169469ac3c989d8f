"""Dataset names that start or end with whitespace or an invisible character.

``"sales "`` and ``"sales"`` would be two datasets that look the same in every listing, so such
names are refused wherever a name is created, and a read with one says so and points at the name
without it. Datasets stored under such names before they were refused stay readable and
deletable.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
from frametools import assert_identical
from hubtools import execute

import dsnotebook as dsn
from dsnotebook.errors import DatasetNotFound, ValidationError

FRAME = pd.DataFrame({"a": np.arange(5), "b": [f"v{i}" for i in range(5)]})

BLANK_ENDS = [
    pytest.param("sales ", "ends", id="trailing-space"),
    pytest.param(" sales", "starts", id="leading-space"),
    pytest.param("\tsales\t", "starts and ends", id="tabs"),
    pytest.param("sales\u00a0", "ends", id="no-break-space"),
    pytest.param("sales\u3000", "ends", id="ideographic-space"),
    pytest.param("\u200bsales", "starts", id="zero-width-space"),
    pytest.param("\ufeffsales", "starts", id="byte-order-mark"),
]


def assert_names_refusal(message: str, name: str, where: str) -> None:
    assert repr(name) in message, message
    assert f"{where} with whitespace or an invisible character" in message, message
    assert "must begin and end with a visible character" in message, message
    assert "use 'sales'" in message, message


@pytest.mark.parametrize(("name", "where"), BLANK_ENDS)
def test_push_and_check_refuse_names_with_blank_ends_before_anything_is_scheduled(hub, name, where):
    for if_exists in ("replace", "append", "fail"):
        with pytest.raises(ValidationError) as err:
            hub.push(FRAME, name, if_exists=if_exists)
        assert_names_refusal(str(err.value), name, where)
        with pytest.raises(ValidationError) as err:
            hub.check(FRAME, name, if_exists=if_exists)
        assert_names_refusal(str(err.value), name, where)
    assert hub.datasets().empty and hub.tasks().empty and hub.running() == []


def test_the_async_hub_refuses_them_too(db_url):
    async def main() -> None:
        async with dsn.AsyncHub(db_url) as ahub:
            for call in (ahub.push, ahub.check):
                with pytest.raises(ValidationError) as err:
                    await call(FRAME, "sales ")
                assert_names_refusal(str(err.value), "sales ", "ends")
            assert (await ahub.datasets()).empty

    asyncio.run(main())


def test_names_with_inner_spaces_and_edge_marks_that_show_are_accepted(hub):
    # Only the ends are checked; a variation selector (not invisible) may end an emoji name.
    for name in ("q3 sales", "a\u00a0b", "\u2764\ufe0f", "x\u200dy"):
        assert hub.push(FRAME, name).wait(timeout=60).name == name
    assert sorted(hub.datasets()["name"]) == sorted(["q3 sales", "a\u00a0b", "\u2764\ufe0f", "x\u200dy"])


def test_reads_with_a_blank_ended_name_suggest_the_name_without_it(hub):
    hub.push(FRAME, "sales").wait(timeout=60)
    reads = {
        "pull": lambda n: hub.pull(n),
        "iter_batches": lambda n: list(hub.iter_batches(n)),
        "info": hub.info,
        "versions": hub.versions,
        "delete": hub.delete,
        "prune": lambda n: hub.prune(n, keep=1),
    }
    for what, read in reads.items():
        for name in ("sales ", "\u200bsales", " sales\n"):
            with pytest.raises(DatasetNotFound) as err:
                read(name)
            message = str(err.value)
            assert repr(name) in message and "did you mean 'sales'?" in message, (what, message)
            assert "starts or ends with whitespace or an invisible character" in message, (what, message)
    assert_identical(hub.pull("sales"), FRAME)


def test_a_blank_ended_read_without_a_stripped_twin_still_gets_close_names(hub):
    hub.push(FRAME, "sales_2024").wait(timeout=60)
    with pytest.raises(DatasetNotFound) as err:
        hub.pull("sales_2025 ")
    message = str(err.value)
    assert "'sales_2025 '" in message and "starts or ends with whitespace" in message
    assert "did you mean 'sales_2024'?" in message


def test_datasets_stored_under_such_names_by_older_versions_stay_readable_and_deletable(hub):
    hub.push(FRAME, "sales").wait(timeout=60)
    hub.push(FRAME.head(2), "sales").wait(timeout=60)
    hub.push(FRAME.head(3), "other").wait(timeout=60)
    # What an older dsnotebook, which took any name, left in the catalog.
    execute(hub, "UPDATE dsn_datasets SET name = 'sales ' WHERE name = 'sales'")

    assert sorted(hub.datasets()["name"]) == ["other", "sales "]
    assert_identical(hub.pull("sales "), FRAME.head(2))
    assert_identical(hub.pull("sales ", version=1), FRAME)
    assert_identical(pd.concat(list(hub.iter_batches("sales ", batch_rows=1))), FRAME.head(2))
    assert hub.info("sales ").name == "sales "
    assert hub.versions("sales ")["version"].tolist() == [1, 2]
    # The name as typed without the space is not it, and the message shows the stored one.
    with pytest.raises(DatasetNotFound) as err:
        hub.pull("sales")
    assert "did you mean 'sales '?" in str(err.value)
    # No new version goes under the old name: the refusal names the one to use instead.
    with pytest.raises(ValidationError) as err:
        hub.push(FRAME, "sales ", if_exists="append")
    assert_names_refusal(str(err.value), "sales ", "ends")

    assert hub.prune("sales ", keep=1) == [1]
    assert hub.delete("sales ") == [2]
    assert hub.datasets()["name"].tolist() == ["other"]
    assert_identical(hub.pull("other"), FRAME.head(3))
