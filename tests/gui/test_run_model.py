"""The pieces behind the preview and the status bar that need no trainer."""

from __future__ import annotations

import math

from desktop_app.loss_plot import positive
from desktop_app.run_model import Curves, Series
from desktop_app.status_bar import format_bytes, format_duration


def test_series_grows_past_its_buffer():
    series = Series()
    for step in range(5000):
        series.append(step, step * 0.5)
    assert len(series) == 5000 and series.x[-1] == 4999 and series.y[-1] == 2499.5


def test_curves_leave_out_what_a_log_plot_cannot_show():
    curves = Curves()
    curves.add(1, 0.5, None)
    curves.add(2, math.nan, 0.4)
    curves.add(3, 0.0, math.inf)
    assert curves.steps == [1, 3]
    assert list(curves.heldout.x) == [2]
    x, y = positive(curves.train)
    assert list(x) == [1] and list(y) == [0.5]


def test_status_formats():
    assert format_duration(65) == "1:05" and format_duration(3725) == "1:02:05"
    assert format_duration(math.nan) == "–" and format_duration(math.inf) == "–"
    assert format_bytes(512) == "512 B" and format_bytes(3 * 1024**2) == "3.0 MB"
