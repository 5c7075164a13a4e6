"""``python -m benchmarks.cold_cost`` runs and reports every step, hot and cold, against its anchor."""
from __future__ import annotations

import re

from benchmarks import cold_cost


def test_the_cold_cost_table_has_every_step_with_positive_times(capsys):
    assert cold_cost.main(["--rounds", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row.split(" | ")[0][2:] for row in rows[1:]]
    assert names[0] == "python loop of 10 (anchor)" and "task woken by an Event" in names and len(names) == 9
    for row in rows[1:]:
        cold = float(row.rstrip(" |").split(" | ")[2])
        assert cold > 0 and re.search(r"\| \d+\.\d \|$", row), row
    assert rows[1].endswith("| 1.0 |")  # the anchor against itself
