"""``lora.target_modules`` is checked against the UNet's layers before the model loads, naming what exists.

Before: a target that matched nothing was skipped without a word (a typo trained less), and one matching
only normalisation layers, or none at all, stopped the run with peft's error after the model had loaded.
"""

from __future__ import annotations

import pytest

from tests.diffusion.conftest import diffusion_config, draw_shapes
from tests.trainer.helpers import run_in_process
from trainer.config import ConfigError
from trainer.models.lora_targets import check_lora_targets
from trainer.protocol import EXIT_BAD_INPUT, Failed


def test_targets_that_exist_pass_in_folders_and_single_files(tiny_models, tiny_single_files):
    for model in (tiny_models["sd15"], tiny_single_files["sd15"], tiny_models["sdxl"], tiny_single_files["sdxl"]):
        check_lora_targets(model, ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "proj_in",
                                   "attn2.to_k", "mid_block.resnets.0.conv1"])


@pytest.mark.parametrize(("targets", "expected"), [
    (["to_qq", "to_k"], "'to_qq' matches no layer"),
    (["to_q", "in_layers.2"], "'in_layers.2' matches no layer"),  # the single-file name, not the model's
    (["norm1"], "'norm1' names only GroupNorm/LayerNorm layers, which LoRA cannot adapt"),
    (["x", "y"], "'x', 'y' match no layer"),
])
def test_targets_that_match_nothing_adaptable_are_refused_naming_what_exists(tiny_single_files, targets, expected):
    with pytest.raises(ConfigError) as caught:
        check_lora_targets(tiny_single_files["sd15"], targets)
    message = str(caught.value)
    assert message.startswith(f"lora.target_modules: in the UNet of {tiny_single_files['sd15']}, {expected}")
    assert "\n" not in message and "layers end in: conv, conv1, conv2, conv_in" in message and "to_out.0" in message



def test_the_run_is_refused_before_the_model_loads(tmp_path, tiny_models, monkeypatch):
    import trainer.models

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before lora.target_modules was checked")

    monkeypatch.setattr(trainer.models, "load_model", never)
    data = draw_shapes(tmp_path / "data", 2)
    config = diffusion_config(tiny_models["sd15"], data, lora={"target_modules": ["to_q", "to_kk"]},
                              training={"steps": 1})
    code, recorder = run_in_process(config, tmp_path / "run")
    (failed,) = recorder.of(Failed)
    assert (code, failed.kind) == (EXIT_BAD_INPUT, "input"), failed
    assert "lora.target_modules:" in failed.message and "'to_kk' matches no layer" in failed.message
