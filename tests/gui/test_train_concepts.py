"""The Train page's Dataset group shows every concept of the project (a card each: name, image count,
token, repeats, resolution, folder, class set) and follows the Dataset page as concepts are added,
renamed, edited and removed; with several concepts it hides the first concept's own fields."""

from __future__ import annotations

import html
import re

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QFormLayout, QScrollArea

from desktop_app.train.concept_summary import ConceptCard, ConceptSummary
from desktop_app.train.form_groups import FIRST_CONCEPT_FIELDS
from desktop_app.train.hyperparameters_panel import HyperparametersPanel
from tests.gui.dataset_helpers import loaded, photos
from trainer.config import config_from_dict


def summary_of(window) -> ConceptSummary:
    return window.extras.concepts


def card_text(card: ConceptCard) -> str:
    """What a card says, as one line (the title without its link markup)."""
    labels = (card.title, card.images, card.details, card.folder, card.class_set)
    texts = [label.full_text if hasattr(label, "full_text") else label.text() for label in labels
             if not label.isHidden()]
    return html.unescape(re.sub(r"<[^>]+>", "", " | ".join(texts)))


def row_shown(panel: HyperparametersPanel, name: str) -> bool:
    row = panel.rows[name]
    layout = row.parentWidget().layout()
    assert isinstance(layout, QFormLayout)
    return layout.isRowVisible(row)


def dreambooth_window(make_window, make_project, images: int = 2):
    project = make_project(["dataset.path=datasets/subject", "dreambooth.class_prompt=a photo of a dog",
                            "dreambooth.class_dir=datasets/class", "dreambooth.num_class_images=20"],
                           "sd15-dreambooth")
    photos(project.root / "datasets" / "subject", images)
    window = make_window(project=project)
    return window, project


def test_the_dataset_group_lists_every_concept_and_follows_the_dataset_page(qtbot, make_window, make_project,
                                                                             tmp_path):
    window, _project = dreambooth_window(make_window, make_project)
    dataset, form, summary = window.dataset_panel, window.hyperparameters_panel, summary_of(window)
    assert summary.parentWidget() is form.groups["dataset"]
    loaded(qtbot, dataset, 2)
    qtbot.waitUntil(lambda: "2 images" in card_text(summary.cards[0]), timeout=10_000)
    (first,) = summary.cards
    assert card_text(first).startswith("subject | 2 images | token sks  ·  1 repeat  ·  512 px")
    assert "Folder: datasets/subject" in card_text(first)  # relative to the project, as on the Dataset page
    assert "Class: 20 of “a photo of a dog” in datasets/class" in card_text(first)
    assert all(row_shown(form, name) for name in FIRST_CONCEPT_FIELDS)  # one concept: its fields stay here
    assert window.extras.class_sets_note.isHidden()

    # Added on the Dataset page: a second card, and the first concept's own fields leave the form.
    assert dataset.add_concept(photos(tmp_path / "cats", 3, seed=500))
    qtbot.waitUntil(lambda: len(summary.cards) == 2, timeout=10_000)
    qtbot.waitUntil(lambda: "3 images" in card_text(summary.cards[1]), timeout=10_000)
    assert card_text(summary.cards[1]).startswith("cats | 3 images | token sks  ·  1 repeat  ·  512 px")
    assert "Class: none (trains without class images)" in card_text(summary.cards[1])
    assert not any(row_shown(form, name) for name in FIRST_CONCEPT_FIELDS)
    assert row_shown(form, "dataset.resolution") and row_shown(form, "dataset.bucketing")  # shared by all
    assert not window.extras.class_sets_note.isHidden()  # the DreamBooth group says where its class fields went
    assert summary.heading.text().startswith("2 concepts") and "5 images per epoch" in summary.heading.text()

    # Renamed and edited in the Dataset page's concept bar.
    bar = dataset.concepts
    bar.name.setText("my cat")
    bar.name.editingFinished.emit()
    bar.token.setText("zwx")
    bar.token.editingFinished.emit()
    bar.repeats.setValue(4)
    assert card_text(summary.cards[1]).startswith("my cat | 3 images | token zwx  ·  4 repeats  ·  512 px")
    assert "5 images, 14 per epoch with repeats" in summary.heading.text()
    window.config_model.set_value("dataset.resolution", 640)  # the second concept follows the dataset's
    assert "640 px" in card_text(summary.cards[0]) and "640 px" in card_text(summary.cards[1])

    # Removed: back to one card, and the fields come back.
    dataset.ask_remove = lambda _parent, _title: True
    dataset.concept_tabs.remove.click()
    assert len(summary.cards) == 1 and card_text(summary.cards[0]).startswith("subject")
    assert all(row_shown(form, name) for name in FIRST_CONCEPT_FIELDS) and window.extras.class_sets_note.isHidden()
    window.close()


def test_a_preset_with_other_concepts_and_a_project_switch_redraw_the_cards(qtbot, make_window, make_project):
    window, project = dreambooth_window(make_window, make_project)
    summary = summary_of(window)
    data = project.config.to_dict()
    data["mode"] = "lora"
    data["concepts"] = [{"name": "my cat", "path": "datasets/cat", "instance_token": "zwx", "repeats": 3},
                        {"path": "/elsewhere/garden", "instance_token": "ohwx", "resolution": 768}]
    window.config_model.load(config_from_dict(data))
    assert [card_text(card).split(" | ")[0] for card in summary.cards] == ["subject", "my cat", "garden"]
    assert "Folder: /elsewhere/garden" in card_text(summary.cards[2])  # outside the project: as configured
    assert "768 px" in card_text(summary.cards[2])
    assert all(card.class_set.isHidden() for card in summary.cards)  # LoRA: no class sets
    window.config_model.load(project.config)
    assert len(summary.cards) == 1 and not any(card.isHidden() for card in summary.cards)
    window.close()


def test_a_problem_in_a_hidden_field_is_named_in_the_summary(qtbot, make_window, make_project, tmp_path):
    window, _project = dreambooth_window(make_window, make_project)
    form = window.hyperparameters_panel
    assert window.dataset_panel.add_concept(photos(tmp_path / "cats", 1, seed=500))
    qtbot.waitUntil(lambda: len(summary_of(window).cards) == 2, timeout=10_000)
    window.config_model.set_value("dataset.repeats", 0)
    assert not form.summary.isHidden() and "dataset.repeats:" in form.summary.text()
    window.close()


def test_clicking_a_concepts_name_opens_it_on_the_dataset_page(qtbot, make_window, make_project, tmp_path):
    window, _project = dreambooth_window(make_window, make_project)
    dataset = window.dataset_panel
    loaded(qtbot, dataset, 2)
    assert dataset.add_concept(photos(tmp_path / "cats", 3, seed=500))
    qtbot.waitUntil(lambda: dataset.store.count() == 2 and len(dataset.dataset.entries) == 3, timeout=10_000)
    dataset.store.select(0)
    window.show()
    window.show_page(window.splitter)
    title = summary_of(window).cards[1].title
    window.hyperparameters_panel.findChild(QScrollArea).ensureWidgetVisible(title)
    qtbot.waitExposed(window)
    qtbot.mouseClick(title, Qt.MouseButton.LeftButton, pos=QPoint(6, title.height() // 2))
    assert window.pages.currentWidget() is window.dataset_page and dataset.store.current == 1
    loaded(qtbot, dataset, 3)
    window.close()
