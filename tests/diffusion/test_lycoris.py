"""LoHa and LoKr (``lora.adapter``) through peft: they learn, their kohya/LyCORIS file gives, module by module,
the weight change the trained adapter made when applied the way ComfyUI applies LyCORIS files (alpha ÷ the rank
read from the file; a LoKr without a decomposed factor at scale 1), and peft's folder reloads into a fresh
UNet that draws the run's final sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.config import ConfigError, config_from_dict
from trainer.lora_names import kohya_name
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder


def comfy_delta(tensors: dict[str, torch.Tensor], name: str, shape: torch.Size) -> torch.Tensor:
    """What ComfyUI adds to a weight for the LyCORIS module ``name`` (its weight adapters' rules, as facts)."""
    get = tensors.get
    if f"{name}.hada_w1_a" in tensors:
        w1 = get(f"{name}.hada_w1_a") @ get(f"{name}.hada_w1_b")
        w2 = get(f"{name}.hada_w2_a") @ get(f"{name}.hada_w2_b")
        scale = float(get(f"{name}.alpha")) / get(f"{name}.hada_w1_b").shape[0]
        return (w1 * w2).reshape(shape) * scale
    dim = None
    w1 = get(f"{name}.lokr_w1")
    if w1 is None:
        dim = get(f"{name}.lokr_w1_b").shape[0]
        w1 = get(f"{name}.lokr_w1_a") @ get(f"{name}.lokr_w1_b")
    w2 = get(f"{name}.lokr_w2")
    if w2 is None:
        dim = get(f"{name}.lokr_w2_b").shape[0]
        w2 = get(f"{name}.lokr_w2_a") @ get(f"{name}.lokr_w2_b")
    if len(w2.shape) == 4:
        w1 = w1.unsqueeze(2).unsqueeze(2)
    alpha = get(f"{name}.alpha")
    scale = float(alpha) / dim if alpha is not None and dim is not None else 1.0
    return torch.kron(w1, w2).reshape(shape) * scale


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["loha", "lokr"])
def test_lycoris_adapters_learn_and_both_files_give_what_was_trained(tmp_path, tiny_sd15, shapes_dataset, adapter):
    import diffusers
    from peft import LoHaConfig, LoKrConfig, inject_adapter_in_model, set_peft_model_state_dict

    config = diffusion_config(tiny_sd15, shapes_dataset, lora={"adapter": adapter, "rank": 4, "alpha": 8.0},
                              training={"steps": 30, "batch_size": 2, "learning_rate": 1e-2, "eval_every": 10,
                                        "seed": 1})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    curve = [row["heldout_loss"] for row in RunFolder(tmp_path / "run").read_metrics() if "heldout_loss" in row]
    # A product of factors that starts at zero learns more slowly than LoRA at first: a looser bar than LoRA's
    # 0.92, but every held-out measurement lower than the last.
    assert curve == sorted(curve, reverse=True) and curve[-1] < 0.97 * curve[0], curve

    kohya_file, peft_dir = (Path(p) for p in rec.of(Finished)[0].outputs)
    with safe_open(kohya_file, "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_network_module"] == "lycoris.kohya"
    assert json.loads(metadata["ss_network_args"]) == {"algo": adapter}
    tensors = load_file(kohya_file)

    saved = json.loads((peft_dir / "unet" / "adapter_config.json").read_text(encoding="utf-8"))
    peft_config = (LoHaConfig if adapter == "loha" else LoKrConfig)(
        r=saved["r"], alpha=saved["alpha"], target_modules=saved["target_modules"])
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd15, local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    unet = inject_adapter_in_model(peft_config, pipe.unet)
    result = set_peft_model_state_dict(unet, load_file(peft_dir / "unet" / "adapter_model.safetensors"))
    assert not result.unexpected_keys

    checked = 0
    for path, layer in unet.named_modules():
        if not hasattr(layer, "get_delta_weight") or "default" not in getattr(layer, "r", {}):
            continue
        name = kohya_name("unet", path, False)
        expected = layer.get_delta_weight("default").float()
        got = comfy_delta(tensors, name, layer.get_base_layer().weight.shape)
        assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4), name
        assert expected.abs().max() > 0, name  # it learned something there
        checked += 1
    prefixes = {key.rsplit(".", 1)[0] for key in tensors}
    assert checked == len(prefixes) > 0  # every module of the file, and no other

    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    image = pipe(final.prompts[0], width=64, height=64, num_inference_steps=3, guidance_scale=7.5,
                 generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0]
    assert np.abs(np.asarray(image, dtype=np.int16) - trained).max() <= 2


def test_lycoris_adapters_are_refused_by_name_where_no_file_format_holds_them():
    for architecture in ("zimage", "qwenimage"):
        with pytest.raises(ConfigError, match=r"lora\.adapter: loha is written in the kohya/LyCORIS format that "
                                              r"ComfyUI reads for .* only; choose lora or dora for (Z|Q)"):
            config_from_dict({"mode": "lora", "model": {"architecture": architecture}, "lora": {"adapter": "loha"}})
    for architecture in ("sdxl", "sd3", "flux"):
        assert config_from_dict({"mode": "lora", "model": {"architecture": architecture},
                                 "lora": {"adapter": "lokr"}}).lora.adapter == "lokr"


def test_the_merge_room_names_a_lycoris_file_it_cannot_fuse_yet(tmp_path):
    from safetensors.torch import save_file

    from trainer.errors import InputError
    from trainer.merge.lora_files import read_lora

    path = tmp_path / "style-loha.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.zeros(4, 2),
               "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_b": torch.zeros(2, 4),
               "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(2.0)}, path)
    with pytest.raises(InputError, match=r"is a LoHa \(LyCORIS\) file: the Merge page fuses and merges LoRA files"):
        read_lora(path, "merge.lora")


@pytest.mark.parametrize(("architecture", "adapter"), [("flux", "loha"), ("sd3", "lokr")])
def test_transformer_lycoris_files_give_pefts_weights_in_the_fused_original_layout(tmp_path, architecture, adapter):
    """LoHa/LoKr on SD 3.5's and Flux's transformer (q, k, v among them) with every factor random: each module of the
    file is ``lycoris_`` + its diffusers path, the name ComfyUI maps onto its slice of the fused original layer
    (``comfy/lora.py``, ``model_lora_keys_unet``: "simpletuner lycoris format"), and placed there with ComfyUI's
    rules every original-layout weight equals peft's own merge; the peft folder is named after the transformer."""
    import importlib
    from types import SimpleNamespace

    from trainer.families import kohya_facts
    from trainer.lora_formats import add_lora_adapters, export_lycoris_files
    from trainer.models.tiny import tiny_pipeline

    transformer = tiny_pipeline(architecture).transformer
    config = dict(transformer.config)
    layout_module, layout_function = kohya_facts(architecture).transformer_layout.split(":")
    layout = getattr(importlib.import_module(layout_module), layout_function)(config)
    to_original = importlib.import_module({"flux": "trainer.models.flux_layout",
                                           "sd3": "trainer.models.sd3_layout"}[architecture]).to_original
    base = to_original({k: v.clone() for k, v in transformer.state_dict().items()}, config)
    lora = SimpleNamespace(adapter=adapter, rank=2, alpha=3.0, dropout=0.0,
                           target_modules=["to_q", "to_k", "to_v", "norm_out.linear", "proj_out"])
    add_lora_adapters(transformer, [], lora, False)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in transformer.named_parameters():
        if ".hada_" in name or ".lokr_" in name:  # trained: no factor is zero any more
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.3
    kohya_file, peft_dir = export_lycoris_files(tmp_path / "x.safetensors", tmp_path / "peft", architecture,
                                                transformer, [], lora, "x", {})
    tensors = load_file(kohya_file)
    assert (peft_dir / "transformer" / "adapter_model.safetensors").is_file()

    deltas = {path: layer.get_delta_weight("default").float() for path, layer in transformer.named_modules()
              if hasattr(layer, "get_delta_weight") and "default" in getattr(layer, "r", {})}
    names = {key.rsplit(".", 1)[0] for key in tensors}
    assert names == {"lycoris_" + path.replace(".", "_") for path in deltas}
    assert any(layout[path][2] for path in deltas)  # some are rows of a fused layer
    got = {key: value.clone() for key, value in base.items()}
    for path in deltas:  # ComfyUI: the module's delta, by its rules, added to its slice of the original weight
        original, offset, rows, _, swap = layout[path]
        delta = comfy_delta(tensors, "lycoris_" + path.replace(".", "_"), transformer.get_submodule(path)
                            .get_base_layer().weight.shape)
        if swap:
            delta = torch.cat(delta.chunk(2, dim=0)[::-1])
        target = got[original + ".weight"]
        (target[offset: offset + rows] if rows else target).add_(delta)
    for module in transformer.modules():
        if hasattr(module, "merge") and "default" in getattr(module, "r", {}):
            module.merge()
    expected = to_original({key.replace(".base_layer", ""): value for key, value in transformer.state_dict().items()
                            if ".hada_" not in key and ".lokr_" not in key}, config)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=2e-6, rtol=1e-5, msg=key)
