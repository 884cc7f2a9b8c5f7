"""DoRA (``lora.adapter = "dora"``, peft's ``use_dora``): it learns; its diffusers file loads with the pipeline's
``load_lora_weights`` and draws the trained adapter's image; its kohya file, applied with ComfyUI's maths
(``comfy/weight_adapter/lora.py`` and ``base.py``'s ``weight_decompose``), gives module by module the weight peft
computes (fused by peft itself) — the UNet's, the text encoder's and, for a transformer family, the fused
original-layout layers'; the Merge page refuses DoRA files by name."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.config import config_from_dict
from trainer.lora_formats import DIFFUSERS_FILE
from trainer.lora_names import kohya_name
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder


def comfy_apply(weight: torch.Tensor, tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The weight ComfyUI makes of ``weight`` and the kohya module ``name`` at strength 1 (its rules, as facts:
    alpha ÷ the rank of lora_down; with a ``dora_scale`` d of the weight's row count, rows rescaled by d over the
    norm of the *base* weight's rows plus float32's epsilon; otherwise over the merged weight's columns)."""
    down, up = tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"]
    scale = float(tensors[f"{name}.alpha"]) / down.shape[0]
    merged = weight + scale * (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
    dora_scale = tensors.get(f"{name}.dora_scale")
    if dora_scale is None:
        return merged
    ones = [1] * (weight.dim() - 1)
    if dora_scale.shape[0] == merged.shape[0]:
        norm = weight.reshape(weight.shape[0], -1).norm(dim=1, keepdim=True).reshape(weight.shape[0], *ones)
    else:
        norm = (merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1, keepdim=True)
                .reshape(merged.shape[1], *ones).transpose(0, 1))
    return merged * (dora_scale / (norm + torch.finfo(torch.float32).eps))


def plain_weight(model: torch.nn.Module, path: str) -> torch.Tensor:
    module = model.get_submodule(path)
    return getattr(module, "base_layer", module).weight.detach().float()


@pytest.mark.slow
def test_dora_learns_and_both_files_give_the_weights_peft_trained(tmp_path, tiny_sd15, shapes_dataset):
    import diffusers

    config = diffusion_config(tiny_sd15, shapes_dataset, lora={"adapter": "dora", "rank": 4, "alpha": 8.0,
                                                              "train_text_encoder": True},
                              training={"steps": 10, "batch_size": 2, "learning_rate": 1e-2, "eval_every": 5})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    curve = [row["heldout_loss"] for row in RunFolder(tmp_path / "run").read_metrics() if "heldout_loss" in row]
    assert curve == sorted(curve, reverse=True) and curve[-1] < 0.97 * curve[0], curve

    kohya_file, diffusers_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    output = tmp_path / "run" / "output"
    assert (kohya_file, diffusers_file) == (output / "tiny.safetensors", output / "diffusers" / DIFFUSERS_FILE)
    with safe_open(kohya_file, "pt") as handle:
        assert json.loads(handle.metadata()["ss_network_args"])["dora_wd"] == "True"
    tensors = load_file(kohya_file)
    assert any(key.endswith(".lora_magnitude_vector.weight") for key in load_file(diffusers_file))

    def pipeline() -> diffusers.StableDiffusionPipeline:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd15, local_files_only=True,
                                                                 safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    base, trained = pipeline(), pipeline()
    trained.load_lora_weights(str(diffusers_file))
    final = rec.of(Sample)[-1]
    image = trained(final.prompts[0], width=64, height=64, num_inference_steps=3, guidance_scale=7.5,
                    generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0]
    drawn = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(image, dtype=np.int16) - drawn).max() <= 2  # the diffusers file is the adapter

    trained.fuse_lora(components=["unet", "text_encoder"])  # peft's own DoRA merge
    names = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in tensors}
    checked = set()
    for component in ("unet", "text_encoder"):
        for path, module in getattr(base, component).named_modules():
            name = kohya_name(component, path, False)
            if name not in names or not hasattr(module, "weight"):
                continue
            assert tensors[f"{name}.dora_scale"].shape == (module.weight.shape[0], *[1] * (module.weight.dim() - 1))
            expected = plain_weight(getattr(trained, component), path)
            got = comfy_apply(module.weight.detach().float(), tensors, name)
            torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-5, msg=name)
            assert not torch.allclose(expected, module.weight.float()), name  # it learned something there
            checked.add(name)
    assert checked == names and any(n.startswith("lora_te_") for n in checked)  # every module, text encoder too


def test_the_sd3_dora_kohya_file_gives_pefts_weights_in_stabilitys_fused_layers(tmp_path):
    """DoRA on a tiny SD 3.5 MMDiT with random ups and magnitudes: q and k (not v) of both streams are rows of the
    fused ``qkv`` layers, whose v rows must come out unchanged; ``norm_out.linear`` holds its halves swapped.
    Every original-layout weight ComfyUI makes from the kohya file equals peft's own merge in that layout."""
    import copy

    from trainer.lora_formats import add_lora_adapters, export_kohya_transformer_lora, export_transformer_lora
    from trainer.models.sd3_layout import to_original
    from trainer.models.tiny import tiny_pipeline

    pipe = tiny_pipeline("sd3")
    transformer = pipe.transformer
    plain = copy.deepcopy(transformer)
    base = to_original({k: v.clone() for k, v in transformer.state_dict().items()}, dict(transformer.config))
    targets = ["to_q", "to_k", "add_q_proj", "norm_out.linear", "proj_out"]
    add_lora_adapters(transformer, [], SimpleNamespace(adapter="dora", rank=2, alpha=3.0, dropout=0.0,
                                                       target_modules=targets), False)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in transformer.named_parameters():
        if "lora_B" in name:  # trained adapters: B is no longer zero, magnitudes moved
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.1
        elif "lora_magnitude_vector" in name:
            parameter.data = parameter.data * (1 + 0.2 * torch.rand(parameter.shape, generator=generator))
    tensors = load_file(export_kohya_transformer_lora(tmp_path / "sd3.safetensors", "sd3", transformer, [], "x", {}))

    # The diffusers file: the pipeline's own loader puts the same DoRA back on the plain transformer.
    diffusers_file = export_transformer_lora(tmp_path / "peft.safetensors", "sd3", transformer, [], {})
    config = transformer.config
    generator = torch.Generator().manual_seed(2)
    inputs = {"hidden_states": torch.randn(1, config.in_channels, 8, 8, generator=generator),
              "encoder_hidden_states": torch.randn(1, 5, config.joint_attention_dim, generator=generator),
              "pooled_projections": torch.randn(1, config.pooled_projection_dim, generator=generator),
              "timestep": torch.tensor([500.0]), "return_dict": False}
    with torch.no_grad():
        before, trained = plain(**inputs)[0], transformer(**inputs)[0]
        loaded = type(pipe)(**pipe.components | {"transformer": plain})
        loaded.load_lora_weights(str(diffusers_file))
        torch.testing.assert_close(loaded.transformer(**inputs)[0], trained)
    assert not torch.allclose(before, trained, atol=1e-3)

    for module in transformer.modules():  # peft's merge of every DoRA layer
        if hasattr(module, "lora_magnitude_vector"):
            module.merge()
    merged = {key.replace(".base_layer", ""): value for key, value in transformer.state_dict().items()
              if "lora_" not in key}
    expected = to_original(merged, dict(transformer.config))
    names = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in tensors}
    assert "lora_unet_joint_blocks_0_x_block_attn_qkv" in names and "lora_unet_final_layer_adaLN_modulation_1" in names
    for key, weight in base.items():
        name = "lora_unet_" + key.removesuffix(".weight").replace(".", "_")
        if key.endswith(".weight") and name in names:
            torch.testing.assert_close(comfy_apply(weight.float(), tensors, name), expected[key].float(),
                                       atol=2e-6, rtol=1e-5, msg=name)
            names.discard(name)
        else:
            torch.testing.assert_close(expected[key], weight, msg=key)  # untouched by the adapters
    assert not names  # every module of the file is a layer of the model


def test_an_sdxl_dora_kohya_file_in_kohyas_sai_names_gives_pefts_weights_convolutions_too(tmp_path):
    """SDXL's kohya names are the original (SAI) layout's; DoRA on attention, feed-forward and 3×3 convolutions
    (``dora_scale`` (out, 1, 1, 1)) gives, applied as ComfyUI does, peft's merged UNet in that layout."""
    from trainer.lora_formats import add_lora_adapters, export_dora_kohya_file
    from trainer.models.original_layout import unet_to_original
    from trainer.models.tiny import tiny_pipeline

    unet = tiny_pipeline("sdxl").unet
    levels = {i for i, kind in enumerate(unet.config.up_block_types) if "CrossAttn" in kind}

    def original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return unet_to_original(state, unet.config.layers_per_block, levels)

    base = original({k: v.clone() for k, v in unet.state_dict().items()})
    add_lora_adapters(unet, [], SimpleNamespace(adapter="dora", rank=2, alpha=3.0, dropout=0.0,
                                                target_modules=["to_q", "proj_in", "ff.net.0.proj", "conv1"]), False)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in unet.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.1
        elif "lora_magnitude_vector" in name:
            parameter.data = parameter.data * (1 + 0.2 * torch.rand(parameter.shape, generator=generator))
    written = export_dora_kohya_file(tmp_path / "xl.safetensors", "sdxl", unet, [], "xl", {})
    assert written == tmp_path / "xl.safetensors" and sorted(tmp_path.iterdir()) == [written]
    tensors = load_file(written)
    for module in unet.modules():
        if hasattr(module, "lora_magnitude_vector"):
            module.merge()
    expected = original({key.replace(".base_layer", ""): value for key, value in unet.state_dict().items()
                         if "lora_" not in key})
    names = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in tensors}
    assert any(tensors[f"{name}.dora_scale"].dim() == 4 for name in names)  # a convolution's
    assert all(name.startswith("lora_unet_input_blocks_") or name.startswith(("lora_unet_middle_block_",
                                                                             "lora_unet_output_blocks_"))
               for name in names)
    for key, weight in base.items():
        name = "lora_unet_" + key.removeprefix("model.diffusion_model.").removesuffix(".weight").replace(".", "_")
        if key.endswith(".weight") and name in names:
            torch.testing.assert_close(comfy_apply(weight.float(), tensors, name), expected[key].float(),
                                       atol=2e-6, rtol=1e-5, msg=name)
            names.discard(name)
        else:
            torch.testing.assert_close(expected[key], weight, msg=key)
    assert not names


def test_dora_is_offered_for_every_family_and_the_merge_page_refuses_its_files_by_name(tmp_path):
    from trainer.errors import InputError
    from trainer.merge.lora_files import read_lora

    for architecture in ("sd15", "sdxl", "sd3", "flux", "zimage", "qwenimage"):
        assert config_from_dict({"mode": "lora", "model": {"architecture": architecture},
                                 "lora": {"adapter": "dora"}}).lora.adapter == "dora"
    name = "lora_unet_down_blocks_0_attentions_0_proj_in"
    kohya = tmp_path / "style-dora.safetensors"
    save_file({f"{name}.lora_down.weight": torch.zeros(2, 4), f"{name}.lora_up.weight": torch.zeros(4, 2),
               f"{name}.alpha": torch.tensor(2.0), f"{name}.dora_scale": torch.ones(4, 1)}, kohya)
    peft_file = tmp_path / "pytorch_lora_weights.safetensors"
    save_file({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 4),
               "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(4, 2),
               "unet.down_blocks.0.attentions.0.proj_in.lora_magnitude_vector.weight": torch.ones(4)}, peft_file)
    for path in (kohya, peft_file):
        with pytest.raises(InputError, match=r"is a DoRA file: the Merge page fuses and merges LoRA files only"):
            read_lora(path, "merge.lora")
