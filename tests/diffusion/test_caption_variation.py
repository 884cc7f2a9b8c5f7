"""Caption dropout, tag dropout and tag shuffling (``dataset.caption_dropout`` …): what each draw's caption is, and
that a run really trains on those captions — the same ones after a resume."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.diffusion.conftest import diffusion_config, straight_and_resumed
from trainer.config import ConfigError, config_from_dict
from trainer.dataset.caption_ops import CaptionVariation

CAPTION = "sks, red, circle, small, centered, plain background"


def test_a_draw_keeps_the_first_tags_and_shuffles_and_drops_the_rest():
    variation = CaptionVariation(shuffle_tags=True, tag_dropout=0.25, keep_tags=1)
    draws = [variation.apply(CAPTION, random.Random(seed)) for seed in range(2000)]
    tags = CAPTION.split(", ")
    assert all(draw.split(", ")[0] == "sks" for draw in draws)  # kept: first, never dropped
    assert all(set(draw.split(", ")) <= set(tags) for draw in draws)
    orders = Counter(tuple(draw.split(", ")[1:]) for draw in draws if len(draw.split(", ")) == len(tags))
    assert len(orders) > 50  # shuffled: many orders of the full set
    kept = Counter(tag for draw in draws for tag in draw.split(", ")[1:])
    for tag in tags[1:]:
        assert kept[tag] / len(draws) == pytest.approx(0.75, abs=0.04)  # each dropped a quarter of the time
    again = [variation.apply(CAPTION, random.Random(seed)) for seed in range(2000)]
    assert again == draws  # a draw is a function of its seed


def test_caption_dropout_empties_that_share_of_captions_and_leaves_the_rest():
    variation = CaptionVariation(caption_dropout=0.1)
    draws = [variation.apply(CAPTION, random.Random(seed)) for seed in range(4000)]
    assert set(draws) == {"", CAPTION}
    assert draws.count("") / len(draws) == pytest.approx(0.1, abs=0.015)
    assert not variation.varies_text  # two forms only: still cacheable


def test_other_separators_and_nothing_on_by_default():
    assert CaptionVariation().apply(CAPTION, random.Random(0)) == CAPTION
    spaced = CaptionVariation(shuffle_tags=True, separator=" ")
    assert sorted(spaced.apply("a b c d", random.Random(3)).split(" ")) == ["a", "b", "c", "d"]
    piped = CaptionVariation(tag_dropout=0.9, separator="|", keep_tags=2)
    assert piped.apply("x|y|z|w", random.Random(1)).startswith("x| y")


def test_the_config_refuses_a_cache_for_captions_that_change_every_draw():
    with pytest.raises(ConfigError, match=r"dataset\.cache_text: on cannot cache captions whose tags"):
        config_from_dict({"mode": "lora", "model": {"architecture": "sd15"},
                          "dataset": {"shuffle_tags": True, "cache_text": "on"}})
    with pytest.raises(ConfigError, match=r"model\.text_encoder_device: cpu needs the captions cached"):
        config_from_dict({"mode": "lora", "model": {"architecture": "sd15", "text_encoder_device": "cpu"},
                          "dataset": {"tag_dropout": 0.1}})
    fine = config_from_dict({"mode": "lora", "model": {"architecture": "sd15"}, "dataset": {"caption_dropout": 0.1,
                                                                                             "cache_text": "disk"}})
    assert fine.dataset.caption_dropout == 0.1


@pytest.fixture
def tagged_dataset(tmp_path, shapes_dataset) -> Path:
    folder = tmp_path / "tagged"
    shutil.copytree(shapes_dataset, folder)
    for caption in folder.glob("*.txt"):
        caption.write_text(CAPTION, encoding="utf-8")
    return folder


def test_a_run_trains_on_the_varied_captions_and_its_resume_sees_the_same(tmp_path, tiny_sd15, tagged_dataset,
                                                                          monkeypatch):
    from trainer.diffusion import engines

    seen: list[str] = []
    original = engines.UnetEngine.encode_prompts

    def spy(self, encoders, captions, device):
        seen.extend(captions)
        return original(self, encoders, captions, device)

    monkeypatch.setattr(engines.UnetEngine, "encode_prompts", spy)
    config = diffusion_config(tiny_sd15, tagged_dataset, dataset={
        "path": str(tagged_dataset), "resolution": 64, "min_bucket_side": 64, "max_bucket_side": 128,
        "shuffle_tags": True, "keep_tags": 1, "caption_dropout": 0.2},
        training={"steps": 6, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 3, "seed": 1})
    _, _, (a, b) = straight_and_resumed(config, tmp_path, stop_at=3)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)  # the same captions after resume
    trained = [caption for caption in seen if caption != CAPTION]  # the evaluation set keeps the written caption
    assert "" in trained  # some draws dropped their caption
    varied = [caption for caption in trained if caption]
    assert len(set(varied)) > 3 and all(caption.startswith("sks, ") for caption in varied)
