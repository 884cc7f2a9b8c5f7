"""The pieces behind the preview and the status bar that need no trainer."""

from __future__ import annotations

import math
import time

from desktop_app.preview.loss_plot import positive
from desktop_app.preview.run_model import Curves, RunModel, Series
from desktop_app.session import TrainingSession
from desktop_app.status_bar import format_bytes, format_duration, format_speed
from trainer.protocol import Finished, LayerWeights, Progress


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
    assert format_speed(205.08) == "205 it/s" and format_speed(3.44) == "3.4 it/s"
    assert format_speed(0.268) == "0.27 it/s"


def progress(step: int) -> Progress:
    return Progress(step=step, total_steps=1000, loss=1.0 / step, lr=1e-3, it_per_s=100.0, eta_s=1.0,
                    elapsed_s=0.1, memory_bytes=0, memory_kind="rss")


def test_plot_and_heatmaps_redraw_at_most_a_few_times_a_second_and_end_on_the_latest_state(qtbot):
    """A fast run drains a batch every 50 ms; the views must not redraw for each (it froze the window)."""
    session = TrainingSession()
    model = RunModel(session)
    curves, weights, status = [], [], []
    model.curvesChanged.connect(lambda: curves.append(len(model.curves.train)))
    model.weightsChanged.connect(lambda snapshot: weights.append(snapshot.step))
    model.statusChanged.connect(lambda: status.append(model.step))
    started = time.monotonic()
    for step in range(1, 41):  # 40 batches, 10 ms apart: 0.4 s of events
        session.progress.emit(progress(step))
        if step % 10 == 0:
            session.weights.emit(LayerWeights(step=step, layers=()))
        session.eventsDrained.emit()
        qtbot.wait(10)
    elapsed_ms = (time.monotonic() - started) * 1000
    assert status[-1] == 40 and len(status) == 40  # the status line follows every batch
    assert 1 <= len(curves) <= elapsed_ms / RunModel.VIEW_INTERVAL_MS + 2, curves
    assert curves[0] == 1  # leading edge: the first batch shows at once
    # Trailing edge: the latest state arrives once the interval has passed, without another event.
    qtbot.waitUntil(lambda: curves[-1] == 40 and weights[-1] == 40, timeout=2000)
    assert len(weights) <= 3


def test_the_end_of_a_run_shows_the_final_curve_at_once(qtbot):
    session = TrainingSession()
    model = RunModel(session)
    curves = []
    model.curvesChanged.connect(lambda: curves.append(len(model.curves.train)))
    session.progress.emit(progress(1))
    session.eventsDrained.emit()
    session.progress.emit(progress(2))
    session.eventsDrained.emit()  # within the interval: held back
    assert curves == [1]
    session.finished.emit(Finished(run_dir="", step=2, stopped=False))
    assert curves == [1, 2]


def test_the_heatmaps_say_which_layers_are_frozen(qtbot):
    """A frozen toy run's snapshots mark its frozen layers (tests/trainer/test_toy_training.py); the view says so."""
    from desktop_app.preview.weights_view import WeightsView
    from trainer.protocol import LayerSnapshot

    def layer(name: str, rows: int, cols: int, frozen: bool) -> LayerSnapshot:
        return LayerSnapshot(name, (rows, cols), tuple(0.01 * i for i in range(rows * cols)), (0.0,) * rows, frozen)

    session = TrainingSession()
    model = RunModel(session)
    view = WeightsView(model)
    qtbot.addWidget(view)
    snapshot = LayerWeights(step=50, layers=(layer("input_layer", 50, 10, True), layer("hidden_layer", 50, 50, True),
                                             layer("output_layer", 1, 50, False)))
    session.weights.emit(snapshot)
    session.eventsDrained.emit()
    qtbot.waitUntil(lambda: len(view.views) == 3, timeout=2000)
    assert view.frozen_layers == ["input_layer", "hidden_layer"]
    assert ["frozen" in v.title.text for v in view.views] == [True, True, False]
    assert "step 50" in view.header.text


def test_a_constant_learning_rate_is_drawn_from_zero_up(qtbot):
    """Left to autorange, a constant rate sat in the middle of ±0.5 and read as 0."""
    from desktop_app.preview.loss_plot import LossPlot

    session = TrainingSession()
    model = RunModel(session)
    plot = LossPlot(model)
    qtbot.addWidget(plot)
    for step in range(1, 6):
        session.progress.emit(progress(step))  # lr 1e-3 throughout
    session.finished.emit(Finished(run_dir="", step=5, stopped=False))  # the final state, drawn at once
    low, high = plot.lr_widget.getPlotItem().viewRange()[1]
    assert low <= 0 < 1e-3 < high < 2e-3, (low, high)


def test_the_legend_sits_above_the_plot_and_hides_no_curve(qtbot):
    """A legend box in the plot's corner hid the newest fifth of the curves: it is a strip above them."""
    from desktop_app.preview.loss_plot import LossPlot

    session = TrainingSession()
    model = RunModel(session)
    plot = LossPlot(model)
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    for step in range(1, 6):
        session.progress.emit(progress(step))
    session.finished.emit(Finished(run_dir="", step=5, stopped=False))
    assert plot.plot_widget.getPlotItem().legend is None  # nothing drawn over the view box
    top_of_plot = plot.plot_widget.mapTo(plot, plot.plot_widget.rect().topLeft()).y()
    assert plot.legend.isVisible() and plot.legend.geometry().bottom() <= top_of_plot
    for name in ("training loss (raw)", "training loss (smoothed)", "held-out loss"):
        assert name in plot.legend.text()


def test_a_long_runs_curves_are_shown_whole_after_a_short_one(qtbot):
    """The Runs page hands the plot a whole run at once: its x range must cover every step."""
    from desktop_app.preview.loss_plot import LossPlot
    from desktop_app.runs.runs_page import CurvesSource

    source = CurvesSource()
    plot = LossPlot(source)  # type: ignore[arg-type]
    qtbot.addWidget(plot)
    plot.resize(700, 400)
    plot.show()

    def run(steps: int) -> Curves:
        return Curves.from_metrics([{"step": s, "loss": 1.0 / (1 + s), "lr": 1e-3,
                                     **({"heldout_loss": 0.5} if s % 100 == 0 else {})} for s in range(1, steps + 1)])

    source.show(run(25), 25)
    source.show(run(1500), 1500)
    low, high = plot.plot_widget.getPlotItem().viewRange()[0]
    assert low <= 0 and high >= 1500, (low, high)


def test_run_names_in_the_history_drop_the_timestamp():
    from desktop_app.runs.runs_page import list_name

    assert list_name("demo-20261206-002631") == "demo"
    assert list_name("my-style-lora-20261206-002631-2") == "my-style-lora"
    assert list_name("20261206-002631") == "20261206-002631"
    assert list_name("custom folder") == "custom folder"


def test_a_run_whose_final_samples_failed_ends_with_a_warning_not_an_error(qtbot):
    """The worker saves before it samples (tests/diffusion/test_end_of_run.py); the banner says both."""
    from desktop_app.preview.notice_banner import NoticeBanner

    session = TrainingSession()
    model = RunModel(session)
    banner = NoticeBanner(model)
    qtbot.addWidget(banner)
    warning = "The final samples failed: ValueError: seed too large. The checkpoint and the outputs were saved."
    session.finished.emit(Finished(run_dir="", step=30, stopped=False, outputs=("/run/output/toy.safetensors",),
                                   warnings=(warning,)))
    assert model.notice.level == "warning" and model.notice.title == "Finished: 30 steps"
    assert "Saved toy.safetensors" in model.notice.text and "final samples failed" in model.notice.text
    assert "final samples failed" in banner.text.text()
