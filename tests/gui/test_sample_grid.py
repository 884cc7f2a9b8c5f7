"""The sample grid grows a row per Sample event, loads images off the GUI thread, and compares with step 0."""

from __future__ import annotations

import threading

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from desktop_app.preview.run_model import RunModel
from desktop_app.preview.sample_grid import PLACEHOLDER, SampleGrid
from desktop_app.preview.sample_history import read_sample_history
from desktop_app.preview.thumbnails import ThumbnailLoader
from desktop_app.session import TrainingSession
from tests.gui.tiny_sd import tiny_sd_overrides
from trainer.protocol import Sample

PROMPTS = ("a sks emblem", "an emblem")
SEEDS = (1, 2)


def write_step(root, step: int, shade: int, all_seeds: tuple[int, ...] = SEEDS) -> Sample:
    """Samples as the trainer writes them: samples/step-NNNNNN/pII-seedS.png, one per prompt × seed."""
    folder = root / "samples" / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    paths, prompts, seeds = [], [], []
    for p_index, prompt in enumerate(PROMPTS):
        for seed in all_seeds:
            path = folder / f"p{p_index:02d}-seed{seed}.png"
            Image.new("RGB", (64, 64), (shade, 40 * seed, 100 * p_index)).save(path)
            paths.append(str(path))
            prompts.append(prompt)
            seeds.append(seed)
    return Sample(step, tuple(paths), tuple(prompts), tuple(seeds))


def make_grid(qtbot):
    session = TrainingSession()
    model = RunModel(session)
    grid = SampleGrid(model.sample_history)
    qtbot.addWidget(grid)
    return session, model, grid


def test_the_grid_grows_one_row_per_sampling_step(qtbot, tmp_path):
    session, model, grid = make_grid(qtbot)
    assert grid.header.text() == PLACEHOLDER and grid.row_count() == 0
    for count, step in enumerate((0, 50, 100), start=1):
        session.sample.emit(write_step(tmp_path, step, 60 * count))
        assert grid.row_count() == count and grid.tile_count() == 4 * count
    assert grid.rows == [0, 50, 100] and grid.columns == [(p, s) for p in PROMPTS for s in SEEDS]
    # Rows are steps, columns prompt × seed: the tile for (step 50, "an emblem", seed 2) sits at row 1, column 4
    # (column 0 holds the step labels; the prompt × seed headers stay above the scrolling rows).
    tile = grid.tiles[(50, 3)]
    assert grid.grid.getItemPosition(grid.grid.indexOf(tile))[:2] == (1, 4)
    assert tile.path.endswith("step-000050/p01-seed2.png")
    assert "step 100" in grid.header.text()

    # The pixels arrive from the loader's pool, not from the GUI thread.
    qtbot.waitUntil(lambda: all(t.pixmap() is not None and not t.pixmap().isNull() for t in grid.tiles.values()),
                    timeout=10_000)

    session.sample.emit(write_step(tmp_path, 50, 250))  # a step drawn again (Sample now) replaces its row
    assert grid.row_count() == 3 and grid.tile_count() == 12
    model.begin(tmp_path / "next-run", 100, "lora")  # a new run starts an empty grid
    assert grid.row_count() == 0 and grid.header.text() == PLACEHOLDER
    grid.shutdown()


def test_headers_stay_over_their_columns_and_the_newest_row_is_in_view(qtbot, tmp_path):
    """Eight columns do not fit in 600 px: the headers scroll sideways with the tiles rather than
    being squeezed out of line, and each new row is scrolled into view once it is laid out."""
    session, _model, grid = make_grid(qtbot)
    grid.resize(600, 320)
    grid.show()
    qtbot.waitExposed(grid)
    for count, step in enumerate(range(0, 350, 50), start=1):
        session.sample.emit(write_step(tmp_path, step, 30 * count, all_seeds=(0, 1, 2, 3)))
    qtbot.waitUntil(lambda: grid.scroll.verticalScrollBar().maximum() > 0)
    qtbot.wait(50)
    vertical = grid.scroll.verticalScrollBar()
    assert vertical.value() == vertical.maximum()  # the newest row (step 300) is the one in view
    newest = grid.tiles[(300, 0)]
    top = newest.mapTo(grid.scroll.viewport(), newest.rect().topLeft()).y()
    assert 0 <= top and top + newest.height() <= grid.scroll.viewport().height()

    headers = grid.column_bar.findChildren(QLabel, "sampleColumnHeader")
    assert len(headers) == 8

    def lined_up() -> bool:
        return all(abs(header.mapToGlobal(header.rect().topLeft()).x()
                       - grid.tiles[(300, column)].mapToGlobal(grid.tiles[(300, column)].rect().topLeft()).x()) <= 1
                   for column, header in enumerate(headers))

    assert lined_up()
    horizontal = grid.scroll.horizontalScrollBar()
    assert horizontal.maximum() > 0  # it really is too wide for the widget
    horizontal.setValue(horizontal.maximum())
    qtbot.wait(20)
    assert lined_up()


def test_loading_runs_on_a_pool_thread(qtbot, tmp_path):
    sample = write_step(tmp_path, 0, 10)
    loader = ThumbnailLoader()
    from desktop_app.preview import thumbnails

    loads: list[int] = []
    run = thumbnails._Load.run

    def tracking_run(self):
        loads.append(threading.get_ident())
        run(self)

    thumbnails._Load.run = tracking_run  # type: ignore[method-assign]
    try:
        with qtbot.waitSignal(loader.loaded, timeout=10_000) as loaded:
            loader.request(sample.paths[0], 32)
    finally:
        thumbnails._Load.run = run  # type: ignore[method-assign]
        loader.shutdown()
    assert loads and loads[0] != threading.get_ident()
    assert loaded.args[2].width() == 32  # scaled while decoding, in the pool
    assert loader.cached(sample.paths[0], 32) is not None


def test_click_enlarges_beside_step_zero_and_any_step_compares(qtbot, tmp_path):
    session, _model, grid = make_grid(qtbot)
    for step in (0, 50, 100):
        session.sample.emit(write_step(tmp_path, step, step + 20))
    tile = grid.tiles[(100, 2)]
    qtbot.mouseClick(tile, Qt.MouseButton.LeftButton)
    dialog = grid.dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.shown_steps() == (0, 100)
    left, right = dialog.shown_paths()
    assert left.endswith("step-000000/p01-seed1.png") and right.endswith("step-000100/p01-seed1.png")
    qtbot.waitUntil(lambda: dialog.right_image.pixmap() is not None and not dialog.right_image.pixmap().isNull(),
                    timeout=10_000)
    assert dialog.right_image.pixmap().width() == 384  # the 64 px sample, enlarged

    dialog.left_combo.setCurrentIndex(dialog.left_combo.findData(50))  # any step against any other
    dialog.left_combo.activated.emit(dialog.left_combo.currentIndex())
    assert dialog.shown_paths()[0].endswith("step-000050/p01-seed1.png")
    dialog.close()
    grid.shutdown()


def test_history_reads_back_from_a_run_folder(tmp_path):
    (tmp_path / "config.toml").write_text(
        'mode = "lora"\n[model]\narchitecture = "sd15"\n[sampling]\nprompts = ["a sks emblem", "an emblem"]\n',
        encoding="utf-8")
    for step in (0, 20):
        write_step(tmp_path, step, 5)
    history = read_sample_history(tmp_path)
    assert [s.step for s in history] == [0, 20]
    assert history[1].prompts == ("a sks emblem", "a sks emblem", "an emblem", "an emblem")
    assert history[1].seeds == (1, 2, 1, 2)


@pytest.mark.slow  # a real (tiny) LoRA run with 3 × 2 sample images
def test_a_real_short_run_grows_the_grid_in_the_window(qtbot, make_window, tmp_path, monkeypatch):
    window = make_window(tiny_sd_overrides(tmp_path, monkeypatch), preset="sd15-lora-8gb")
    grid, session = window.preview_panel.sample_grid, window.session
    assert window.preview_panel.lower.currentWidget() is grid
    window.start_training()
    qtbot.waitUntil(lambda: session.state in ("finished", "failed"), timeout=300_000)
    notice = window.run_model.notice
    assert session.state == "finished", notice.text if notice else "no notice"
    assert grid.rows == [0, 3, 6]  # step 0 (the base model), every 3 steps (the last one is the end)
    assert grid.columns == [("a sks emblem", 1), ("an emblem", 1)]
    assert grid.tile_count() == 6
    qtbot.waitUntil(lambda: grid.loader.pending() == 0, timeout=10_000)
    assert all(not tile.pixmap().isNull() for tile in grid.tiles.values())
    assert "step 6" in grid.header.text() and "Step 6 of 6" in window.preview_panel.stats.text()


def test_eight_columns_fit_the_width_and_tiles_scale_with_the_space(qtbot, tmp_path):
    """The demo's 4 prompts × 2 seeds: every column in view beside the form, no sideways scrolling, and at
    least two rows in sight; a wider window gets bigger tiles, and a column title opens the comparison."""
    from desktop_app.preview.sample_grid import MIN_TILE

    session, _model, grid = make_grid(qtbot)
    grid.resize(820, 420)
    grid.show()
    seeds = (1, 2, 3, 4)
    for step, shade in ((0, 40), (100, 120), (200, 200)):
        session.sample.emit(write_step(tmp_path, step, shade, seeds))
    qtbot.waitUntil(lambda: all(t.pixmap() is not None and not t.pixmap().isNull() for t in grid.tiles.values()),
                    timeout=10_000)
    assert len(grid.columns) == 8
    assert grid.scroll.horizontalScrollBar().maximum() == 0  # nothing off to the side
    small = grid.tile_size
    assert small >= MIN_TILE and all(t.width() == small for t in grid.tiles.values())
    assert 2 * small <= grid.scroll.viewport().height()  # two rows in sight
    assert [h.width() for h in grid.headers] == [small] * 8  # titles stay over their columns
    grid.resize(1500, 700)
    qtbot.waitUntil(lambda: grid.tile_size > small, timeout=5_000)
    assert all(t.width() == grid.tile_size for t in grid.tiles.values())
    assert grid.scroll.horizontalScrollBar().maximum() == 0
    qtbot.mouseClick(grid.headers[5], Qt.MouseButton.LeftButton)
    assert grid.dialog is not None and grid.dialog.isVisible()
    grid.dialog.close()
