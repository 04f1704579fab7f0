"""DeferredInserts: inserts only started, waited for together; a row that points at others
(an alert at its features and risk) is started only once those before it are in."""
from __future__ import annotations

import pyarrow as pa
import pytest

from sentinel_ray.storage.warehouse import DeferredInserts


class StartedInOrder:
    """A warehouse whose started inserts land only when waited for; it logs both events."""

    def __init__(self, refuse: str | None = None) -> None:
        self.log: list[str] = []
        self.refuse = refuse

    def insert_started(self, name: str, table: pa.Table):
        self.log.append(f"start {name}")

        def wait() -> int:
            self.log.append(f"landed {name}")
            if name == self.refuse:
                raise RuntimeError(f"{name} refused")
            return table.num_rows
        return wait


ROWS = pa.table({"x": [1, 2]})


def test_inserts_run_side_by_side_and_a_last_one_waits_for_those_before_it() -> None:
    warehouse = StartedInOrder()
    writes = DeferredInserts(warehouse, last=("alerts",))
    assert writes.insert("features_1m", ROWS) == 2
    writes.insert("risk_1m", ROWS)
    assert warehouse.log == ["start features_1m", "start risk_1m"]  # both running, nothing waited for
    writes.insert("alerts", ROWS)
    assert warehouse.log == ["start features_1m", "start risk_1m", "landed features_1m", "landed risk_1m",
                             "start alerts"]
    writes.wait()
    assert warehouse.log[-1] == "landed alerts"
    writes.insert("alerts", pa.table({"x": pa.array([], pa.int64())}))  # nothing to write: nothing waited
    assert warehouse.log[-1] == "landed alerts"


def test_a_last_row_is_not_written_when_what_it_points_at_failed() -> None:
    warehouse = StartedInOrder(refuse="risk_1m")
    writes = DeferredInserts(warehouse, last=("alerts",))
    writes.insert("features_1m", ROWS)
    writes.insert("risk_1m", ROWS)
    with pytest.raises(RuntimeError, match="risk_1m refused"):
        writes.insert("alerts", ROWS)
    assert "start alerts" not in warehouse.log and "landed features_1m" in warehouse.log
