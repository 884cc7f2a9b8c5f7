"""Transformer-family LoRAs in the merge room, on the families' tiny models: both files Kamaal's export writes for a
family are read as that family, convert into each other giving the export's own other file tensor for tensor, merge
(exact and SVD) keeping their key names, and the merge draws with the family pipeline what the inputs draw together.

The LoRAs are written by Kamaal's own writers (``export_transformer_lora``, ``export_kohya_transformer_lora``) from the
tiny transformer with peft adapters whose B is random (what training leaves), as the family tests' runs write them,
without the 30 training steps: two seeds give two LoRAs to merge."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from trainer.cli import main
from trainer.errors import InputError
from trainer.families import family
from trainer.merge.convert import convert_lora
from trainer.merge.lora_files import read_lora
from trainer.merge.lora_merge import merge_loras

# Every transformer family whose export writes both files, and those whose export writes the diffusers file only.
BOTH_FILES = ["flux", "fluxkontext", "chroma", "sd3", "qwenimage", "qwenimageedit", "qwenimage21", "flux2klein",
              "flux2kleinedit", "flux2dev", "flux2devedit", "lumina2", "ernieimage", "kandinsky5", "krea2", "ideogram4"]
DIFFUSERS_ONLY = ["zimage", "hidream"]


def write_loras(arch: str, seed: int, folder: Path, size: float = 0.1, text: bool = True,
                targets: list[str] | None = None) -> tuple[Path | None, Path]:
    """The (kohya-layout, diffusers) pair a LoRA run of ``arch`` exports, adapters on the family's default targets
    (and, with ``text``, on CLIP where the family trains it), B random; the kohya file is None where the family has
    none."""
    from trainer.lora_formats import add_lora_adapters, export_kohya_transformer_lora, export_transformer_lora
    from trainer.models.tiny import tiny_pipeline

    pipe = tiny_pipeline(arch)
    model = family(arch)
    targets = targets or list(model.lora_target_modules or ["to_q", "to_k", "to_v", "to_out.0"])
    text = text and any(encoder.lora for encoder in model.text_encoders)
    encoders = [getattr(pipe, encoder.component) for encoder in model.text_encoders] if text else []
    add_lora_adapters(pipe.transformer, encoders, SimpleNamespace(rank=2, alpha=3.0, dropout=0.0,
                                                                  target_modules=targets), text)
    generator = torch.Generator().manual_seed(seed)
    for module in (pipe.transformer, *encoders):
        for name, parameter in module.named_parameters():
            if "lora_B" in name:
                parameter.data = torch.randn(parameter.shape, generator=generator) * size
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": {"architecture": arch}}
    kohya = export_kohya_transformer_lora(folder / "run.safetensors", arch, pipe.transformer, encoders, "run", config)
    return kohya, export_transformer_lora(folder / "pytorch_lora_weights.safetensors", arch, pipe.transformer,
                                          encoders, config)


def deltas(path: Path) -> dict[str, torch.Tensor]:
    return {name: module.delta() for name, module in read_lora(path).modules.items()}


def strip_metadata(path: Path, into: Path) -> Path:
    """The same tensors without metadata: a file from a tool that names no family."""
    save_file(load_file(path), into)
    return into


@pytest.mark.parametrize("arch", BOTH_FILES)
def test_each_layout_converts_to_the_export_s_other_file_exactly(tmp_path, arch):
    kohya, diffusers_file = write_loras(arch, 1, tmp_path)
    assert kohya is not None
    lora_family = family(arch).kohya.lora_family
    for path, layout in ((kohya, "original"), (diffusers_file, "diffusers")):
        lora = read_lora(path)
        assert (lora.layout, lora.family()) == (layout, lora_family), path.name
        assert lora_family in read_lora(strip_metadata(path, tmp_path / f"bare-{path.name}")).lora_families
    for source, reference, to in ((diffusers_file, kohya, "kohya"), (kohya, diffusers_file, "diffusers")):
        converted = convert_lora(source, tmp_path / f"to-{to}.safetensors")
        ours, theirs = load_file(converted), load_file(reference)
        assert ours.keys() == theirs.keys(), to
        assert all(torch.equal(ours[key], theirs[key]) for key in theirs), to  # the export's own file, bit for bit
        again = read_lora(converted)
        assert again.family() == lora_family and again.source_format == to
        assert again.metadata["kamaal.family"] == arch  # an edit variant stays itself


@pytest.mark.parametrize("arch", DIFFUSERS_ONLY)
def test_a_family_without_an_original_layout_merges_its_files_and_refuses_conversion_by_name(tmp_path, arch):
    _, first = write_loras(arch, 1, tmp_path / "a")
    _, second = write_loras(arch, 2, tmp_path / "b")
    merged = merge_loras([(first, 1.0), (second, 0.5)], tmp_path / "ab.safetensors").output
    assert load_file(merged).keys() == load_file(first).keys()
    expected_first, expected_second = deltas(first), deltas(second)
    for name, delta in deltas(merged).items():
        torch.testing.assert_close(delta, expected_first[name] + 0.5 * expected_second[name])
    display = family(arch).kohya.lora_family_label
    with pytest.raises(InputError, match=f"Kamaal knows no original .kohya/ComfyUI. layout for {display} LoRAs yet"):
        convert_lora(first, tmp_path / "k.safetensors")
    # ai-toolkit's spelling (``diffusion_model.`` before diffusers' paths, no metadata): merged into the first file's
    # names, whichever comes first.
    toolkit = tmp_path / "toolkit.safetensors"
    save_file({key.replace("transformer.", "diffusion_model.", 1): value for key, value in load_file(second).items()},
              toolkit)
    for inputs, names in (([(first, 1.0), (toolkit, 0.5)], first), ([(toolkit, 0.5), (first, 1.0)], toolkit)):
        out = merge_loras(inputs, tmp_path / "mixed.safetensors").output
        assert load_file(out).keys() == load_file(names).keys()
        expected = {name.replace("diffusion_model.", "transformer.", 1): delta for name, delta in deltas(out).items()}
        for name, delta in expected.items():
            torch.testing.assert_close(delta, expected_first[name] + 0.5 * expected_second[name])


def test_exact_merges_keep_each_layout_s_names_and_mixed_layouts_meet_in_the_first_s(tmp_path):
    """Flux.1: two kohya-layout files merge into one with the very keys the inputs had (BFL's fused ``qkv`` and
    ``linear1``, CLIP as ``lora_te1_``), whose every module is the weighted sum of the inputs'; a diffusers file
    merged with a kohya one is converted exactly (fused q, k, v block-stacked) and gives the same file."""
    kohya_a, diffusers_a = write_loras("flux", 1, tmp_path / "a")
    kohya_b, diffusers_b = write_loras("flux", 2, tmp_path / "b")
    assert kohya_a is not None and kohya_b is not None
    same = merge_loras([(kohya_a, 0.8), (kohya_b, -0.5)], tmp_path / "kk.safetensors").output
    keys = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in load_file(same)}
    assert load_file(same).keys() == load_file(kohya_a).keys()
    assert {"lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_single_blocks_1_linear1"} <= keys
    assert any(key.startswith("lora_te1_text_model_") for key in keys)
    first, second = deltas(kohya_a), deltas(kohya_b)
    for name, delta in deltas(same).items():
        torch.testing.assert_close(delta, 0.8 * first[name] - 0.5 * second[name])
    with safe_open(same, "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_base_model_version"] == "flux1" and metadata["kamaal.family"] == "flux"
    assert json.loads(metadata["kamaal.merge"])["weights"]["weights"] == [0.8, -0.5]

    summary = merge_loras([(kohya_a, 0.8), (diffusers_b, -0.5)], tmp_path / "kd.safetensors")
    assert summary.notes == ["A Flux.1 LoRA in the original (kohya/ComfyUI) layout.",
                             "LoRA 2 was converted exactly from the diffusers layout."]
    mixed = summary.output
    assert load_file(mixed).keys() == load_file(same).keys()
    for name, delta in deltas(mixed).items():
        torch.testing.assert_close(delta, 0.8 * first[name] - 0.5 * second[name])
    as_diffusers = merge_loras([(diffusers_a, 0.8), (kohya_b, -0.5)], tmp_path / "dk.safetensors").output
    assert load_file(as_diffusers).keys() == load_file(diffusers_a).keys()


def test_svd_merge_at_full_rank_is_exact_and_below_it_reports_its_error(tmp_path):
    _, first = write_loras("qwenimage", 1, tmp_path / "a")
    _, second = write_loras("qwenimage", 2, tmp_path / "b")
    exact = merge_loras([(first, 1.0), (second, 1.0)], tmp_path / "x.safetensors")
    full = merge_loras([(first, 1.0), (second, 1.0)], tmp_path / "r4.safetensors", mode="svd", rank=4)
    low = merge_loras([(first, 1.0), (second, 1.0)], tmp_path / "r1.safetensors", mode="svd", rank=1)
    assert full.relative_error < 1e-6 < low.relative_error and low.worst_error >= low.relative_error
    exact_deltas, full_deltas = deltas(exact.output), deltas(full.output)
    for name, delta in exact_deltas.items():
        torch.testing.assert_close(full_deltas[name], delta, atol=1e-6, rtol=1e-5)
    assert load_file(low.output).keys() == load_file(first).keys()
    assert {m.rank for m in read_lora(low.output).modules.values()} == {1}
    # Flux.1's fused layers, asked for in the original layout from two diffusers files: full rank is still exact.
    (kohya, flux_a), (_, flux_b) = write_loras("flux", 1, tmp_path / "fa"), write_loras("flux", 2, tmp_path / "fb")
    fused = merge_loras([(flux_a, 1.0), (flux_b, -1.0)], tmp_path / "f.safetensors", mode="svd", rank=64, fmt="kohya")
    assert fused.relative_error < 1e-6 and load_file(fused.output).keys() == load_file(kohya).keys()
    exact_deltas = deltas(merge_loras([(flux_a, 1.0), (flux_b, -1.0)], tmp_path / "fx.safetensors", fmt="kohya").output)
    for name, delta in deltas(fused.output).items():
        torch.testing.assert_close(delta, exact_deltas[name], atol=1e-6, rtol=1e-5)


def test_loras_of_two_families_or_an_sd_and_a_transformer_one_are_refused_by_name(tmp_path, capsys, lora_1):
    _, flux = write_loras("flux", 1, tmp_path / "flux")
    _, qwen = write_loras("qwenimage", 1, tmp_path / "qwen")
    with pytest.raises(InputError, match=r"LoRA 2 is a LoRA for Qwen-Image but LoRA 1 is for Flux\.1"):
        merge_loras([(flux, 1.0), (qwen, 1.0)], tmp_path / "x.safetensors")
    with pytest.raises(InputError, match=r"LoRA 1 is a LoRA for a Stable Diffusion UNet but LoRA 2 is for a "
                                         r"transformer model \(Flux\.1\)"):
        merge_loras([(lora_1, 1.0), (flux, 1.0)], tmp_path / "y.safetensors")
    bare = strip_metadata(flux, tmp_path / "bare.safetensors")  # Flux.1 or Chroma by its names: merges with either
    assert read_lora(merge_loras([(bare, 1.0), (flux, 1.0)], tmp_path / "z.safetensors").output).family() == "flux"
    flux_kohya = write_loras("flux", 2, tmp_path / "flux-k")[0]
    assert flux_kohya is not None
    bare_kohya = strip_metadata(flux_kohya, tmp_path / "bare-k.safetensors")
    with pytest.raises(InputError, match=r"LoRA 2: cannot tell which model family the LoRA is for \(its metadata does "
                                         r"not say; its module names fit Flux\.1, Chroma\)"):
        merge_loras([(bare, 1.0), (bare_kohya, 1.0)], tmp_path / "u.safetensors")
    named = merge_loras([(flux_kohya, 1.0), (bare, 1.0)], tmp_path / "t.safetensors").output  # the kohya file names it
    assert load_file(named).keys() == load_file(flux_kohya).keys()
    wider = load_file(flux)
    key = "transformer.transformer_blocks.0.attn.to_q.lora_B.weight"
    wider[key] = torch.cat([wider[key], wider[key]])  # a Flux.1 of another width
    save_file(wider, tmp_path / "wider.safetensors", metadata={"kamaal.family": "flux"})
    with pytest.raises(InputError, match=r"LoRA 2: module transformer\.transformer_blocks\.0\.attn\.to_q changes a "
                                         r"\[64, 32\] weight but in LoRA 1 a \[32, 32\] one"):
        merge_loras([(flux, 1.0), (tmp_path / "wider.safetensors", 1.0)], tmp_path / "v.safetensors")
    assert main(["merge", "loras", str(flux), str(qwen), "--out", str(tmp_path / "w.safetensors")]) == 2
    assert "for Qwen-Image but LoRA 1 is for Flux.1" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("x.safetensors", "v.safetensors", "w.safetensors",
                                                                   "u.safetensors"))


def draw(pipe, arch: str) -> np.ndarray:
    arguments = {"guidance_scale": 0.0} if arch == "zimage" else {}  # Z-Image guides above 0: one pass, as Turbo
    pipe.set_progress_bar_config(disable=True)
    image = pipe(prompt="a red circle", width=64, height=64, num_inference_steps=3,
                 generator=torch.Generator("cpu").manual_seed(7), **arguments).images[0]
    return np.asarray(image, dtype=np.int16)


def loaded_with_adapters(arch: str, files: dict[str, Path]):
    """The family's tiny pipeline with each file loaded by its own ``load_lora_weights`` as a named adapter."""
    from trainer.models.tiny import tiny_pipeline

    pipe = tiny_pipeline(arch)
    for name, path in files.items():
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
    return pipe


# Flux.1's (and Chroma's) double blocks only: diffusers' kohya-Flux converter assumes the real model's widths in the
# single blocks (tested at those widths below).
FLUX_DOUBLE = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v",
               "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"]


@pytest.mark.filterwarnings("ignore:Already found a `peft_config`:UserWarning")  # several adapters, on purpose
@pytest.mark.parametrize(("arch", "layout"), [("flux", "diffusers"), ("chroma", "diffusers"), ("sd3", "diffusers"),
                                              ("lumina2", "diffusers"), ("hidream", "diffusers"), ("flux", "kohya"),
                                              ("chroma", "kohya"), ("qwenimage", "kohya"), ("qwenimage21", "kohya"),
                                              ("flux2klein", "kohya"), ("ideogram4", "kohya")])
def test_the_family_loader_reads_the_merge_as_the_weighted_sum_layer_by_layer(tmp_path, arch, layout):
    """The family pipeline's ``load_lora_weights`` reads the merged file into the same layers as the inputs, and each
    layer's change (peft's scale · B @ A) is 0.8 · the first's + 0.5 · the second's.  The kohya layout where diffusers
    reads it for the tiny models (Flux.1's and Chroma's BFL names with fused ``qkv``, Qwen-Image's musubi names and
    2.1's ComfyUI ones, Flux.2's BFL names, Ideogram 4's ``diffusion_model.``); the other families' kohya files (SD
    3.5, Lumina 2, Krea 2, ERNIE-Image, Kandinsky 5) diffusers does not load, and they are held to the export's own
    bytes and sums above."""
    from peft.tuners.lora import LoraLayer

    targets = FLUX_DOUBLE if arch in ("flux", "chroma") and layout == "kohya" else None
    first, second = (write_loras(arch, seed, tmp_path / name, text=False, targets=targets)
                     for seed, name in ((1, "a"), (2, "b")))
    first, second = (pair[0] if layout == "kohya" else pair[1] for pair in (first, second))
    assert first is not None and second is not None
    merged = merge_loras([(first, 0.8), (second, 0.5)], tmp_path / "ab.safetensors").output
    assert load_file(merged).keys() == load_file(first).keys()
    pipe = loaded_with_adapters(arch, {"a": first, "b": second, "merged": merged})
    layers = 0
    for name, layer in pipe.transformer.named_modules():
        if isinstance(layer, LoraLayer) and layer.lora_A:
            change = {k: layer.scaling[k] * (layer.lora_B[k].weight @ layer.lora_A[k].weight) for k in layer.lora_A}
            assert change.keys() == {"a", "b", "merged"}, name
            torch.testing.assert_close(change["merged"], 0.8 * change["a"] + 0.5 * change["b"], msg=name)
            layers += 1
    assert layers == len(read_lora(convert_lora(first, tmp_path / "d.safetensors", to="diffusers")).modules)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Already found a `peft_config`:UserWarning")  # several adapters, on purpose
@pytest.mark.parametrize("arch", ["zimage", "qwenimage", "flux2klein"])
def test_the_merged_file_draws_with_the_family_pipeline_what_both_loras_draw(tmp_path, arch):
    """The family's own pipeline and ``load_lora_weights``: the exact merge at weights 0.8 and 0.5 draws what the two
    files draw as two adapters with those weights (``set_adapters``), and that picture is not the base model's.
    Transformer modules only: diffusers 0.42 loading a CLIP adapter under a name into transformers 5's encoder reports
    its base weights missing (the text modules' sums are checked above instead).  Not Flux.1, whose tiny pipeline's
    first picture differs from its later ones by a level or two, nor SD 3.5, whose picture with the weighted adapters
    differed from the merge's by tens of levels although every layer's change agrees (checked above; not traced)."""
    _, first = write_loras(arch, 1, tmp_path / "a", size=1.0, text=False)
    _, second = write_loras(arch, 2, tmp_path / "b", size=1.0, text=False)
    merged = merge_loras([(first, 0.8), (second, 0.5)], tmp_path / "ab.safetensors").output
    pipe = loaded_with_adapters(arch, {})  # one base for every picture, the adapters switched on and off
    base = draw(pipe, arch)
    for name, path in (("a", first), ("b", second)):
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
    pipe.set_adapters(["a", "b"], [0.8, 0.5])
    expected = draw(pipe, arch)
    pipe.load_lora_weights(str(merged.parent), weight_name=merged.name, adapter_name="merged")
    pipe.set_adapters(["merged"], [1.0])  # the merge alone: the inputs' adapters stay loaded, off
    assert np.abs(draw(pipe, arch) - expected).max() <= 1
    assert np.abs(base - expected).max() > 10


@pytest.mark.slow
def test_the_merge_page_preview_draws_a_transformer_family_s_merged_lora(tmp_path, tiny_flux):
    """The preview task (``render_preview``) loads a Flux.1 merge with the pipeline's own loader and draws it beside the
    base; without a size it draws a transformer family at 512 px (a UNet family's size comes from its config)."""
    from PIL import Image

    from trainer.merge.preview import render_preview

    _, first = write_loras("flux", 1, tmp_path / "a", size=0.3, text=False)
    _, second = write_loras("flux", 2, tmp_path / "b", size=0.3, text=False)
    merged = merge_loras([(first, 0.8), (second, 0.5)], tmp_path / "ab.safetensors").output
    result = render_preview([{"label": "base", "model": str(tiny_flux)},
                             {"label": "merged", "model": str(tiny_flux), "loras": [[str(merged), 1.0]]}],
                            tmp_path / "preview", prompts=["a red circle"], seeds=[1], steps=1)
    (base,), (with_lora,) = (row["images"] for row in result["rows"])
    pictures = [np.asarray(Image.open(path), dtype=np.int16) for path in (base, with_lora)]
    assert pictures[0].shape == (512, 512, 3) and np.abs(pictures[0] - pictures[1]).max() > 10


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("flux") / "tiny-flux", "flux")


def test_a_real_size_flux_lora_converted_to_bfl_names_is_what_diffusers_own_converter_reads_back(tmp_path):
    """At Flux.1 dev's real size (19 double, 38 single blocks, 3072 wide: the shipped config), a diffusers-layout LoRA
    on every attention projection converted to the original layout (fused ``qkv``, ``linear1`` with the MLP rows
    empty) is read by diffusers' kohya-Flux converter — the one ``load_lora_weights`` uses, which assumes those
    widths — back to every module's very ΔW."""
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    from trainer.families.flux import bfl_layout
    from trainer.models.info import MODEL_CONFIGS

    config = json.loads((MODEL_CONFIGS / "flux-dev" / "transformer" / "config.json").read_text(encoding="utf-8"))
    width = config["num_attention_heads"] * config["attention_head_dim"]
    generator = torch.Generator().manual_seed(3)
    ends = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
    tensors = {}
    for path in bfl_layout(config):
        if path.endswith(ends):
            tensors[f"transformer.{path}.lora_A.weight"] = torch.randn(2, width, generator=generator)
            tensors[f"transformer.{path}.lora_B.weight"] = torch.randn(width, 2, generator=generator)
    source = tmp_path / "real.safetensors"
    save_file(tensors, source, metadata={"kamaal.family": "flux"})
    converted = load_file(convert_lora(source, tmp_path / "bfl.safetensors"))
    assert "lora_unet_single_blocks_37_linear1.lora_down.weight" in converted
    back = _convert_kohya_flux_lora_to_diffusers(converted)
    modules = [key.removesuffix(".lora_A.weight") for key in tensors if key.endswith(".lora_A.weight")]
    assert len(modules) == 19 * 8 + 38 * 3
    for module in modules:
        # ‖B'A' − BA‖ / ‖BA‖ from the factors' small Gram matrices (U = [B', −B], D = [A'; A]: ‖UD‖² = tr(UᵀU·DDᵀ)),
        # without forming the 3072 × 3072 products.
        up, down = tensors[f"{module}.lora_B.weight"].double(), tensors[f"{module}.lora_A.weight"].double()
        ups = torch.cat([back[f"{module}.lora_B.weight"].double(), -up], dim=1)
        downs = torch.cat([back[f"{module}.lora_A.weight"].double(), down])
        error = torch.trace((ups.T @ ups) @ (downs @ downs.T)) / torch.trace((up.T @ up) @ (down @ down.T))
        assert float(error) < 1e-12, module


def test_a_dense_fused_layer_from_another_trainer_converts_and_merges_exactly(tmp_path):
    """kohya's own Flux.1 LoRAs train a fused ``qkv`` as one module (one down, a dense up, its own alpha): split into
    q, k, v each keeps the whole down and its rows of up, so converting there and back changes no ΔW, and merging it
    with a diffusers-layout file gives the weighted sum in its own names."""
    kohya, diffusers_file = write_loras("flux", 1, tmp_path / "k", text=False)
    assert kohya is not None
    generator = torch.Generator().manual_seed(5)
    dense = {}
    for key, value in load_file(kohya).items():  # the same modules, every weight dense, rank 3, alpha 1.5
        if key.endswith(".alpha"):
            dense[key] = torch.tensor(1.5)
        elif key.endswith(".lora_down.weight"):
            dense[key] = torch.randn(3, value.shape[1], generator=generator)
        else:
            dense[key] = torch.randn(value.shape[0], 3, generator=generator)
    source = tmp_path / "kohya-flux.safetensors"
    save_file(dense, source, metadata={"ss_base_model_version": "flux1"})
    there = convert_lora(source, tmp_path / "there.safetensors")
    back = convert_lora(there, tmp_path / "back.safetensors")
    original, round_trip = deltas(source), deltas(back)
    assert original.keys() == round_trip.keys()
    for name, delta in original.items():
        torch.testing.assert_close(round_trip[name], delta, msg=name)
    merged = deltas(merge_loras([(source, 1.0), (diffusers_file, 2.0)], tmp_path / "m.safetensors").output)
    other = deltas(kohya)
    for name, delta in merged.items():
        torch.testing.assert_close(delta, original[name] + 2.0 * other[name], msg=name)
