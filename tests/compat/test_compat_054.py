"""The published hindsight-litellm 0.5.4 and ours, side by side: every observable difference of the
public-API scenarios (``tests/compat/scenarios.py``) must be one we chose, with its reason.

0.5.4 runs in a venv of its own (made with uv on first use, from the package index); both run against the
same real Hindsight server and a loopback provider.
"""

from __future__ import annotations

import pytest

from tests.compat.compare import run_comparison
from tests.helpers import closed_port_url


@pytest.mark.server
@pytest.mark.timeout(900)
def test_every_difference_from_0_5_4_is_explained(hindsight_server: str) -> None:
    report = run_comparison(hindsight_server, closed_port_url())
    print(report.render())
    assert not report.unexplained, report.render()
    assert report.differences, "the comparison saw no difference at all: did the scenarios run?"
