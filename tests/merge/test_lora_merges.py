"""LoRA merging and fusing on tiny SD 1.x: exact arithmetic, and the images diffusers draws agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.merge.conftest import load_pipeline, render
from trainer.errors import InputError
from trainer.lora_names import diffusers_key
from trainer.merge.convert import convert_lora
from trainer.merge.fuse import fuse_lora
from trainer.merge.lora_files import read_lora
from trainer.merge.lora_merge import merge_loras
from trainer.merge.outputs import MERGE_METADATA_KEY


def with_adapters(model, loras: list[tuple], dtype=None):
    """Base pipeline plus LoRA adapters at the given weights, the way a diffusers user applies them."""
    pipeline = load_pipeline(model)
    names = []
    for i, (path, _) in enumerate(loras):
        pipeline.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=f"l{i}")
        names.append(f"l{i}")
    pipeline.set_adapters(names, [w for _, w in loras])
    return pipeline


def test_exact_merge_is_the_sum_of_the_deltas(tmp_path, lora_1, lora_2):
    out = merge_loras([(lora_1, 0.7), (lora_2, -0.4)], tmp_path / "sum.safetensors", mode="exact")
    merged, first, second = (read_lora(p) for p in (out.output, lora_1, lora_2))
    assert set(merged.modules) == set(first.modules) | set(second.modules)
    for name, module in merged.modules.items():
        expected = torch.zeros(module.weight_shape())
        for lora, weight in ((first, 0.7), (second, -0.4)):
            if name in lora.modules:
                expected += weight * lora.modules[name].delta()
        assert torch.allclose(module.delta(), expected, atol=1e-6, rtol=1e-5), name
        assert module.rank == sum(lora.modules[name].rank for lora in (first, second) if name in lora.modules)
    with safe_open(out.output, "pt") as handle:
        record = json.loads(handle.metadata()[MERGE_METADATA_KEY])
    assert record["weights"]["weights"] == [0.7, -0.4] and str(lora_1) in record["sources"].values()


def test_svd_error_falls_as_rank_grows_and_is_zero_at_full_rank(tmp_path, lora_1, lora_2):
    errors = []
    for rank in (1, 2, 4, 7):
        summary = merge_loras([(lora_1, 1.0), (lora_2, 1.0)], tmp_path / f"r{rank}.safetensors", mode="svd", rank=rank)
        errors.append(summary.relative_error)
        merged = read_lora(summary.output)
        assert max(m.rank for m in merged.modules.values()) == rank
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[3] < 1e-6, errors
    # The reported error is the real one: measure it directly on ΔW for rank 2.
    exact = read_lora(merge_loras([(lora_1, 1.0), (lora_2, 1.0)], tmp_path / "x.safetensors").output)
    approx = read_lora(tmp_path / "r2.safetensors")
    diff = sum(float((exact.modules[n].delta() - approx.modules[n].delta()).pow(2).sum()) for n in exact.modules)
    norm = sum(float(exact.modules[n].delta().pow(2).sum()) for n in exact.modules)
    assert abs((diff / norm) ** 0.5 - errors[1]) < 1e-4


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Already found a `peft_config`:UserWarning")  # two adapters, on purpose
def test_exact_merge_draws_the_same_image_as_both_adapters(tmp_path, sd15_a, lora_1, lora_2):
    merged = merge_loras([(lora_1, 0.8), (lora_2, 0.5)], tmp_path / "both.safetensors").output
    both = render(with_adapters(sd15_a, [(lora_1, 0.8), (lora_2, 0.5)]))
    single = render(with_adapters(sd15_a, [(merged, 1.0)]))
    plain = render(load_pipeline(sd15_a))
    assert np.abs(both - single).max() <= 1
    assert np.abs(both - plain).max() > 10  # the LoRAs really change the picture


@pytest.mark.slow
def test_fused_model_draws_what_base_plus_adapter_draws(tmp_path, sd15_a, lora_1):
    summary = fuse_lora(sd15_a, [(lora_1, 0.75)], output_dir=tmp_path / "fused",
                        output_file=tmp_path / "fused.safetensors")
    assert summary.outputs == [tmp_path / "fused", tmp_path / "fused.safetensors"]
    reference = render(with_adapters(sd15_a, [(lora_1, 0.75)]))
    assert np.abs(render(load_pipeline(tmp_path / "fused")) - reference).max() <= 1
    from trainer.models.tiny import write_tiny_config_dir

    configs = write_tiny_config_dir(sd15_a, tmp_path / "configs")
    assert np.abs(render(load_pipeline(tmp_path / "fused.safetensors", configs)) - reference).max() <= 1
    assert (tmp_path / "fused" / "kamaal_merge.json").is_file()
    with safe_open(tmp_path / "fused.safetensors", "pt") as handle:
        assert json.loads(handle.metadata()[MERGE_METADATA_KEY])["weights"]["strengths"] == [0.75]


def test_lora_conversions_round_trip(tmp_path, lora_1):
    as_diffusers = convert_lora(lora_1, tmp_path / "d.safetensors")
    back = convert_lora(as_diffusers, tmp_path / "k.safetensors")
    keys = load_file(as_diffusers).keys()
    # One spelling family (no peft lora_A/lora_B), so diffusers converts every key, not just the first kind.
    assert all(k.startswith(("unet.", "text_encoder.")) and k.endswith(("lora.down.weight", "lora.up.weight",
                                                                       "lora_linear_layer.down.weight",
                                                                       "lora_linear_layer.up.weight"))
               for k in keys)
    assert any(".processor.to_q_lora.down.weight" in k for k in keys)
    original, round_trip, middle = read_lora(lora_1), read_lora(back), read_lora(as_diffusers)
    assert middle.source_format == "diffusers" and set(original.modules) == set(round_trip.modules)
    for name, module in original.modules.items():
        assert torch.allclose(middle.modules[name].delta(), module.delta(), atol=1e-7)
        assert torch.allclose(round_trip.modules[name].delta(), module.delta(), atol=1e-7)
    assert diffusers_key("lora_te_text_model_encoder_layers_0_self_attn_q_proj") == \
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    assert diffusers_key("lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_out_0") == \
        "unet.down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0"


@pytest.mark.slow
def test_converted_diffusers_lora_draws_the_same_image(tmp_path, sd15_a, lora_1):
    as_diffusers = convert_lora(lora_1, tmp_path / "d.safetensors", to="diffusers")
    assert np.abs(render(with_adapters(sd15_a, [(as_diffusers, 1.0)]))
                  - render(with_adapters(sd15_a, [(lora_1, 1.0)]))).max() <= 1


def test_mismatched_loras_and_models_are_refused_with_a_reason(tmp_path, sd15_a, lora_1, sdxl_lora):
    with pytest.raises(InputError, match=r"for SDXL but LoRA 1 is for Stable Diffusion 1\.x/2\.x"):
        merge_loras([(lora_1, 1.0), (sdxl_lora, 1.0)], tmp_path / "x.safetensors")
    with pytest.raises(InputError, match=r"LoRA is a LoRA for SDXL, but the base model is Stable Diffusion 1\.x"):
        fuse_lora(sd15_a, [(sdxl_lora, 1.0)], output_dir=tmp_path / "out")
    with pytest.raises(InputError, match="is not a LoRA"):
        merge_loras([(sd15_a / "unet" / "diffusion_pytorch_model.safetensors", 1.0)], tmp_path / "y.safetensors")
    with pytest.raises(InputError, match="SVD merge needs a target rank"):
        merge_loras([(lora_1, 1.0)], tmp_path / "z.safetensors", mode="svd")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_inputs_are_never_overwritten(tmp_path, sd15_a, lora_1, lora_2):
    before = lora_1.read_bytes()
    with pytest.raises(InputError, match="is also an input"):
        merge_loras([(lora_1, 1.0), (lora_2, 1.0)], lora_1)
    with pytest.raises(InputError, match="is also an input"):
        convert_lora(lora_1, lora_1)
    with pytest.raises(InputError, match="contains the input"):
        fuse_lora(sd15_a, [(lora_1, 1.0)], output_dir=sd15_a.parent)
    with pytest.raises(InputError, match="is inside the input"):
        fuse_lora(sd15_a, [(lora_1, 1.0)], output_file=sd15_a / "fused.safetensors")
    assert lora_1.read_bytes() == before


@pytest.mark.slow
def test_sdxl_fused_model_draws_what_base_plus_adapter_draws(tmp_path, sdxl_a, sdxl_lora):
    # Two text encoders (lora_te1_/lora_te2_) and SDXL's size conditioning: the same promise as SD 1.x.
    fuse_lora(sdxl_a, [(sdxl_lora, 1.0)], output_dir=tmp_path / "fused")
    reference = render(with_adapters(sdxl_a, [(sdxl_lora, 1.0)]))
    assert np.abs(render(load_pipeline(tmp_path / "fused")) - reference).max() <= 1
    assert np.abs(render(load_pipeline(sdxl_a)) - reference).max() > 10


def test_diffusers_lora_with_alpha_metadata_is_read_at_its_real_strength(tmp_path, lora_1):
    """A peft/diffusers file with lora_alpha ≠ r in its adapter metadata (what Kamaal's own trainer
    writes): its modules scale by alpha / r, as diffusers applies them."""
    import diffusers

    kohya = read_lora(lora_1)
    rank, alpha = 4, 2.0
    assert {(m.rank, m.alpha) for m in kohya.modules.values()} == {(rank, alpha)}
    layers: dict[str, dict] = {"unet": {}, "text_encoder": {}}
    for name, module in kohya.modules.items():
        component, _, dotted = diffusers_key(name).partition(".")
        layers[component][f"{dotted}.lora_A.weight"] = module.down
        layers[component][f"{dotted}.lora_B.weight"] = module.up
    meta = {"r": rank, "lora_alpha": alpha}
    diffusers.StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=layers["unet"], text_encoder_lora_layers=layers["text_encoder"],
        unet_lora_adapter_metadata={**meta, "target_modules": ["to_q"]},
        text_encoder_lora_adapter_metadata={**meta, "target_modules": ["q_proj"]})
    as_read = read_lora(tmp_path / "pytorch_lora_weights.safetensors")
    assert as_read.source_format == "diffusers" and set(as_read.modules) == set(kohya.modules)
    for name, module in kohya.modules.items():
        assert torch.allclose(as_read.modules[name].delta(), module.delta(), atol=1e-7), name
