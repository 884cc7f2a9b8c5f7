"""Sample events reach the preview: the latest images, one tile per prompt and seed."""

from __future__ import annotations

from PIL import Image

from desktop_app.run_model import RunModel
from desktop_app.samples_view import PLACEHOLDER, SamplesView
from desktop_app.session import TrainingSession
from trainer.protocol import Sample


def test_latest_samples_are_shown_and_cleared_for_a_new_run(qtbot, tmp_path):
    session = TrainingSession()
    model = RunModel(session)
    view = SamplesView(model)
    qtbot.addWidget(view)
    assert view.header.text() == PLACEHOLDER and view.tile_count() == 0

    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9)]):
        path = tmp_path / f"p{i // 2}-seed{i % 2}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        paths.append(str(path))
    event = Sample(step=50, paths=tuple(paths), prompts=("a", "a", "b", "b"), seeds=(1, 2, 1, 2))
    session.sample.emit(event)
    assert model.samples == event
    assert view.header.text() == "Samples at step 50" and view.tile_count() == 4
    # Rows are prompts, columns are seeds.
    assert view.grid.getItemPosition(view.grid.indexOf(view.grid.itemAtPosition(1, 1).widget())) == (1, 1, 1, 1)
    first_image = view.grid.itemAtPosition(0, 0).widget().findChildren(type(view.header))[0]
    assert first_image.pixmap() is not None and not first_image.pixmap().isNull()

    session.sample.emit(Sample(step=0, paths=(paths[0],), prompts=("a",), seeds=(1,)))
    assert "before training" in view.header.text() and view.tile_count() == 1

    model.begin(tmp_path / "next-run", 100, "lora")
    assert view.header.text() == PLACEHOLDER and view.tile_count() == 0
