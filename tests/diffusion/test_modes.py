"""Frozen-layer fine-tuning and DreamBooth with prior preservation on the tiny SD 1.x model;
a dataset with broken files trains on the good ones."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config, draw_shapes
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_BAD_INPUT, EXIT_OK, Failed, Finished
from trainer.runfolder import RunFolder


def eval_curve(run_dir) -> list[float]:
    return [row["heldout_loss"] for row in RunFolder(run_dir).read_metrics() if "heldout_loss" in row]


@pytest.mark.slow
def test_frozen_layers_only_chosen_blocks_move(tmp_path, tiny_sd15, shapes_dataset):
    config = diffusion_config(tiny_sd15, shapes_dataset, mode="frozen", frozen={"trainable": ["up_blocks.1"]},
                              training={"steps": 20, "learning_rate": 1e-3, "eval_every": 10})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    outputs = rec.of(Finished)[0].outputs
    assert outputs[0].endswith("diffusers") and outputs[1].endswith("tiny.safetensors")
    before = load_file(tiny_sd15 / "unet" / "diffusion_pytorch_model.safetensors")
    after = load_file(tmp_path / "run" / "output" / "diffusers" / "unet" / "diffusion_pytorch_model.safetensors")
    assert before.keys() == after.keys()
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("up_blocks.1.") for name in moved)
    for part in ("text_encoder/model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        a, b = load_file(tiny_sd15 / part), load_file(tmp_path / "run" / "output" / "diffusers" / part)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    curve = eval_curve(tmp_path / "run")
    assert curve[-1] < curve[0]
    # The single-file checkpoint loads back through the offline single-file path.
    from trainer.models import load_model

    reloaded = load_model(outputs[1], expected_architecture="sd15", config_dir=tiny_sd15).pipeline
    for name, tensor in reloaded.unet.state_dict().items():
        assert torch.equal(tensor, after[name]), name


def test_unknown_block_is_refused_with_the_block_list(tmp_path, tiny_sd15, shapes_dataset):
    config = diffusion_config(tiny_sd15, shapes_dataset, mode="frozen", frozen={"trainable": ["up_block.1"]})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_BAD_INPUT
    message = rec.of(Failed)[0].message
    assert "frozen.trainable: 'up_block.1' matches no block" in message and "up_blocks" in message


@pytest.mark.slow
def test_dreambooth_generates_missing_class_images_and_uses_the_prior_term(tmp_path, tiny_sd15, shapes_dataset,
                                                                            monkeypatch):
    from trainer.jobs.diffusion import DiffusionJob

    class_dir = draw_shapes(tmp_path / "class", 2, with_captions=False)
    own = {p.name: p.read_bytes() for p in class_dir.iterdir()}
    seen: list[bool] = []
    original = DiffusionJob._batch_loss

    def spy(self, examples, is_class, indices):
        seen.append(is_class)
        return original(self, examples, is_class, indices)

    monkeypatch.setattr(DiffusionJob, "_batch_loss", spy)
    config = diffusion_config(tiny_sd15, shapes_dataset, mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 5,
                                          "prior_loss_weight": 1.0},
                              training={"steps": 10, "eval_every": 5}, sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    files = sorted(p.name for p in class_dir.iterdir())
    assert files == sorted([*own, "class-00000.png", "class-00001.png", "class-00002.png"])  # exactly 3 missing
    assert all((class_dir / name).read_bytes() == data for name, data in own.items())  # the user's own untouched
    assert seen.count(True) == 10 and seen.count(False) == 10  # every step has an instance and a class term
    assert "Generating 3 class image(s) for 'a circle'" in (tmp_path / "run" / "log.txt").read_text()
    curve = eval_curve(tmp_path / "run")
    assert curve[-1] < curve[0]
    # A second run finds enough class images and generates none.
    shutil.rmtree(tmp_path / "run")
    code, _ = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK and len(list(class_dir.iterdir())) == 5


def test_broken_files_are_skipped_and_named(tmp_path, tiny_sd15):
    data = draw_shapes(tmp_path / "data", 3)
    good = (data / "shape-00.png").read_bytes()
    (data / "truncated.png").write_bytes(good[: len(good) // 2])
    (data / "notes.png").write_text("this is not an image", encoding="utf-8")
    config = diffusion_config(tiny_sd15, data, training={"steps": 3, "eval_every": 3})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Skipping" in log and "truncated.png" in log and "notes.png" in log
    assert "3 training images" in log


def test_a_dataset_with_no_usable_image_is_refused(tmp_path, tiny_sd15):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_text("nope", encoding="utf-8")
    code, rec = run_in_process(diffusion_config(tiny_sd15, tmp_path / "data"), tmp_path / "run")
    assert code == EXIT_BAD_INPUT and "dataset.path" in rec.of(Failed)[0].message


def test_disk_latent_cache_encodes_once_and_matches_memory_cache(tmp_path, tiny_sd15, shapes_dataset, monkeypatch):
    from trainer.jobs.diffusion import DiffusionJob

    encoded: list[str] = []
    original = DiffusionJob._encode_images

    def counting(self, examples, draws):
        encoded.extend(example.image.name for example in examples)
        return original(self, examples, draws)

    monkeypatch.setattr(DiffusionJob, "_encode_images", counting)
    results = {}
    for where in ("memory", "disk"):
        encoded.clear()
        config = diffusion_config(tiny_sd15, shapes_dataset, dataset={"cache_latents": where},
                                  training={"steps": 8, "eval_every": 8})
        code, rec = run_in_process(config, tmp_path / where)
        assert code == EXIT_OK, rec.of(Failed)
        assert sorted(encoded) == sorted(set(encoded)) and len(encoded) == 6  # each image encoded once
        results[where] = load_file(rec.of(Finished)[0].outputs[0])
    assert len(list((tmp_path / "disk" / "cache" / "latents").glob("*.safetensors"))) == 6
    assert all(torch.equal(results["memory"][k], results["disk"][k]) for k in results["memory"])


def test_blocks_report_counts_parameters_and_trainable_ones(tiny_sd15, capsys):
    import json

    from trainer.cli import main

    assert main(["blocks", str(tiny_sd15), "--json", "--trainable", "up_blocks.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    unet = {row["block"]: row for row in report["unet"]}
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel.from_pretrained(tiny_sd15 / "unet")
    expected = sum(p.numel() for n, p in model.named_parameters() if n.startswith("up_blocks.1."))
    assert unet["up_blocks.1"]["parameters"] == unet["up_blocks.1"]["trainable"] == expected
    assert unet["down_blocks"]["trainable"] == 0
    assert sum(row["parameters"] for row in report["unet"] if "." not in row["block"]) == model.num_parameters()
    assert report["text_encoder"] and all(row["trainable"] == 0 for row in report["text_encoder"])


def test_inspect_blocks_task_in_a_trainer_process_matches_the_cli(tiny_sd15, capsys):
    """The GUI's block tree comes from the inspect-blocks task in a child process: same numbers as the CLI."""
    import json
    import time

    from trainer.cli import main
    from trainer.process import TaskProcess
    from trainer.protocol import TaskDone

    assert main(["blocks", str(tiny_sd15), "--json", "--depth", "3", "--trainable", "*attn2*"]) == 0
    expected = json.loads(capsys.readouterr().out)
    process = TaskProcess("inspect-blocks", {"model": str(tiny_sd15), "depth": 3, "trainable": ["*attn2*"]})
    process.start()
    try:
        deadline, done = time.monotonic() + 120, []
        while not done and time.monotonic() < deadline:
            done = [e for e in process.poll_events() if isinstance(e, TaskDone)]
            time.sleep(0.05)
        assert done, "the inspect-blocks task did not finish"
        assert done[0].result == {"model": str(tiny_sd15), "blocks": expected}
        assert any(row["trainable"] for row in expected["unet"])
    finally:
        process.close()
