"""Every diffusers folder Kamaal writes or ships loads with a plain ``Pipeline.from_pretrained(path)`` —
no dtype argument, nothing else passed — and draws a picture.

Under plain loading diffusers brings its models (UNet, VAE) up in fp32 whatever they are stored in,
while transformers 5 keeps a text encoder in its stored dtype; a folder with an fp16 or bf16 text
encoder therefore fails at the first UNet matmul ("mat1 and mat2 must have the same dtype").  The
folders below cover each writer: the two bundled models, a short frozen-layer run in bf16 (its text
encoder is held in bf16 while the UNet stays fp32), a fused LoRA, a converted single file (SD 1.x and
SDXL) and a checkpoint merge of folders, the last three asked for fp16.  ``safety_checker`` is not
passed: Kamaal's folders record it as absent in ``model_index.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from trainer.models.folder_dtypes import TEXT_ENCODER_DTYPE, stored_dtypes

BUNDLED = REPO / "resources" / "models"


def _frozen_run(tmp_path: Path, models: dict[str, Path]) -> Path:
    from tests.diffusion.conftest import diffusion_config, draw_shapes
    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed

    config = diffusion_config(models["sd15"], draw_shapes(tmp_path / "data", 2), mode="frozen",
                              model={"precision": "bf16"}, frozen={"trainable": ["up_blocks.1"]},
                              training={"steps": 2, "eval_every": 2}, sampling={"prompts": [], "at_start": False})
    code, recorder = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, recorder.of(Failed)
    return tmp_path / "run" / "output" / "diffusers"


def _fused(tmp_path: Path, models: dict[str, Path]) -> Path:
    from tests.merge.conftest import random_lora, write_lora
    from trainer.merge.fuse import fuse_lora

    lora = write_lora(tmp_path / "lora.safetensors", random_lora(models["sd15"], "sd15", seed=3, rank=2, alpha=2.0))
    return fuse_lora(models["sd15"], [(lora, 1.0)], output_dir=tmp_path / "fused", dtype="fp16").outputs[0]


def _converted(arch: str) -> Callable[[Path, dict[str, Path]], Path]:
    def convert(tmp_path: Path, models: dict[str, Path]) -> Path:
        from safetensors.torch import save_file

        from trainer.merge.convert import convert_model
        from trainer.models import load_model, pipeline_to_original
        from trainer.models.tiny import write_tiny_config_dir

        single = tmp_path / f"{arch}.safetensors"
        pipeline = load_model(models[arch]).pipeline
        save_file({k: v.contiguous() for k, v in pipeline_to_original(pipeline, arch).items()}, single)
        configs = write_tiny_config_dir(models[arch], tmp_path / "configs")
        return convert_model(single, tmp_path / "converted", dtype="fp16", config_dir=configs)

    return convert


def _merged(tmp_path: Path, models: dict[str, Path]) -> Path:
    from trainer.merge.checkpoints import merge_checkpoints
    from trainer.models.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "other", "sd15", seed=1)
    return merge_checkpoints(models["sd15"], other, tmp_path / "merged", alpha=0.3, dtype="fp16").output


# name → (is it SDXL, what writes the folder)
WRITERS: dict[str, tuple[bool, Callable[[Path, dict[str, Path]], Path]]] = {
    "bundled shapes-sd": (False, lambda tmp_path, models: BUNDLED / "shapes-sd"),
    "bundled tiny-sd15": (False, lambda tmp_path, models: BUNDLED / "tiny-sd15"),
    "frozen-layer run (bf16)": (False, _frozen_run),
    "fuse-lora (fp16)": (False, _fused),
    "convert sd15 single file (fp16)": (False, _converted("sd15")),
    "convert sdxl single file (fp16)": (True, _converted("sdxl")),
    "checkpoint merge of folders (fp16)": (False, _merged),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_folder_loads_with_plain_from_pretrained_and_draws(tmp_path, tiny_models, writer):
    import diffusers

    sdxl, write = WRITERS[writer]
    folder = write(tmp_path, tiny_models)
    pipeline_class = diffusers.StableDiffusionXLPipeline if sdxl else diffusers.StableDiffusionPipeline
    pipeline = pipeline_class.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    image = pipeline("a red circle", width=64, height=64, num_inference_steps=2, guidance_scale=3.0,
                     generator=torch.Generator("cpu").manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    parts = {name: module.dtype for name, module in pipeline.components.items() if isinstance(module, torch.nn.Module)}
    assert set(parts.values()) == {torch.float32}, parts
    # The folder follows the rule: every text encoder is stored in fp32.
    encoders = {name: dtypes for name, dtypes in stored_dtypes(folder).items() if name.startswith("text_encoder")}
    assert encoders and all(dtypes == {TEXT_ENCODER_DTYPE} for dtypes in encoders.values()), encoders


def test_writing_a_folder_leaves_the_callers_modules_as_they_were(tmp_path):
    """Widened parts (a bf16 text encoder → fp32) are restored, narrowed ones (fp32 UNet → fp16) copied."""
    from trainer.models import tiny_pipeline
    from trainer.models.folder_dtypes import save_diffusers_folder

    pipeline = tiny_pipeline("sd15", seed=0)
    pipeline.text_encoder.to(torch.bfloat16)
    modules = dict(pipeline.components)
    before = {name: {k: v.clone() for k, v in modules[name].state_dict().items()}
              for name in ("unet", "vae", "text_encoder")}
    save_diffusers_folder(pipeline, tmp_path / "out", torch.float16)
    assert stored_dtypes(tmp_path / "out") == {"unet": {torch.float16}, "vae": {torch.float16},
                                                "text_encoder": {TEXT_ENCODER_DTYPE}}
    for name, state in before.items():
        assert getattr(pipeline, name) is modules[name]
        after = modules[name].state_dict()
        assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in state.items()), name
