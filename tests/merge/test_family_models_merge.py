"""Checkpoint merges of the transformer families (every one in the registry) on tiny models: α = 0 and α = 1 give
each input exactly, add difference with B = C gives A exactly, shared components are copied byte for byte, the
family's own single files merge too, and what cannot be merged is refused naming the file or field."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.merge.family_models import (
    MAIN_FAMILIES,
    folder_tensors,
    perturbed,
    sharded,
    transformer_families,
    write_single_file,
)
from trainer.errors import InputError
from trainer.merge.checkpoints import merge_checkpoints
from trainer.merge.outputs import MERGE_INFO_FILE


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """family → (A, C): C a fine-tune of A's transformer and VAE (built on first use)."""
    from trainer.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("family-merges")
    built: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in built:
            a = build_tiny_model(root / f"{arch}-a", arch, seed=0)
            built[arch] = (a, perturbed(a, root / f"{arch}-c", seed=2, components=("transformer", "vae")))
        return built[arch]

    return get


@pytest.mark.parametrize("arch", transformer_families())
def test_weighted_sum_ends_are_the_inputs_and_add_difference_of_equals_is_a(tmp_path, models, arch):
    a, c = models(arch)
    tensors_a, tensors_c = folder_tensors(a, text_encoders=False), folder_tensors(c, text_encoders=False)
    encoders = sorted(a.glob("text_encoder*/*.safetensors"))  # the same in A and C: copied byte for byte
    for alpha, expected in ((0.0, tensors_a), (1.0, tensors_c)):
        out = merge_checkpoints(a, c, tmp_path / f"ac-{alpha}", alpha=alpha).output
        merged = folder_tensors(out, text_encoders=False)
        assert merged.keys() == expected.keys()
        assert all(torch.equal(merged[k], expected[k]) for k in merged), (arch, alpha)
        assert all((out / e.relative_to(a)).read_bytes() == e.read_bytes() for e in encoders)
    same = merge_checkpoints(a, c, tmp_path / "acc", alpha=0.7, c=c, method="add_difference").output
    merged = folder_tensors(same, text_encoders=False)
    assert merged.keys() == tensors_a.keys() and all(torch.equal(merged[k], tensors_a[k]) for k in tensors_a)


@pytest.mark.parametrize("arch", MAIN_FAMILIES)
def test_a_blend_merges_what_differs_and_copies_what_is_shared(tmp_path, models, arch):
    from trainer.models import load_model

    a, c = models(arch)
    tensors_a, tensors_c = folder_tensors(a), folder_tensors(c)
    # A blend in between really blends the transformer and the VAE that differ, and copies the text encoders.
    half = tmp_path / "ac-half"
    merged = folder_tensors(merge_checkpoints(a, c, half, alpha=0.25).output)
    key = next(k for k in tensors_a if k.startswith("transformer/") and tensors_a[k].is_floating_point()
               and not torch.equal(tensors_a[k], tensors_c[k]))
    blend = tensors_a[key].float() * 0.75 + tensors_c[key].float() * 0.25
    assert torch.allclose(merged[key].float(), blend, atol=1e-6)
    assert any(not torch.equal(merged[k], tensors_a[k]) for k in merged if k.startswith("vae/"))
    for encoder in sorted(a.glob("text_encoder*/*.safetensors")):
        assert (half / encoder.relative_to(a)).read_bytes() == encoder.read_bytes(), encoder
    assert json.loads((half / MERGE_INFO_FILE).read_text())["weights"]["components"] == "all"
    # The transformer only: the rest is A's.
    out = merge_checkpoints(a, c, tmp_path / "transformer-only", alpha=0.5, components="denoiser").output
    merged = folder_tensors(out)
    assert all(torch.equal(merged[k], tensors_a[k]) for k in merged if not k.startswith("transformer/"))
    assert all(torch.allclose(merged[k].float(), (tensors_a[k].float() + tensors_c[k].float()) / 2, atol=1e-6)
               for k in merged if k.startswith("transformer/") and merged[k].is_floating_point())
    assert load_model(out).info.architecture == arch  # a folder the family's pipeline loads


@pytest.mark.parametrize("arch", ["flux", "sd3", "qwenimage"])  # BFL's file, Stability's whole file, ComfyUI's
def test_the_familys_single_files_merge(tmp_path, models, arch):
    a, b = models(arch)
    file_a, file_b = write_single_file(a, tmp_path / "a.safetensors"), write_single_file(b, tmp_path / "b.safetensors")
    tensors_a, tensors_b = load_file(file_a), load_file(file_b)
    for alpha, expected in ((0.0, tensors_a), (1.0, tensors_b)):
        merged = load_file(merge_checkpoints(file_a, file_b, tmp_path / f"m{alpha}.safetensors", alpha=alpha).output)
        assert merged.keys() == expected.keys() and all(torch.equal(merged[k], expected[k]) for k in merged)
    merged = load_file(merge_checkpoints(file_a, file_b, tmp_path / "half.safetensors", alpha=0.5).output)
    assert all(torch.allclose(merged[k].float(), (tensors_a[k].float() + tensors_b[k].float()) / 2, atol=1e-6)
               for k in merged if merged[k].is_floating_point())
    assert any(not torch.equal(merged[k], tensors_a[k]) for k in merged)
    # ComfyUI saves the same transformer with model.diffusion_model. before each key: read under A's names.
    comfy = tmp_path / "b-comfy.safetensors"
    save_file({"model.diffusion_model." + k: v for k, v in tensors_b.items()}, str(comfy))
    summary = merge_checkpoints(file_a, comfy, tmp_path / "m-comfy.safetensors", alpha=1.0)
    merged = load_file(summary.output)
    assert merged.keys() == tensors_a.keys() and all(torch.equal(merged[k], tensors_b[k]) for k in merged)
    assert "ComfyUI's model.diffusion_model. key prefix" in summary.warnings[0]
    with pytest.raises(InputError, match=r"model B: .*b\.safetensors is a single-file checkpoint but model A is a "
                                         r"diffusers folder"):
        merge_checkpoints(a, file_b, tmp_path / "mixed")


def test_refusals_name_the_file_or_field(tmp_path, models):
    flux_a, flux_b = models("flux")
    zimage_a, _ = models("zimage")
    with pytest.raises(InputError, match=r"model B: .*zimage-a is Z-Image but model A is Flux\.1"):
        merge_checkpoints(flux_a, zimage_a, tmp_path / "x", alpha=0.5)
    with pytest.raises(InputError, match=r"block weights: 'IN\*' names no block of this model; it has BASE, "
                                         r"transformer_blocks\.0, single_transformer_blocks\.0, "):
        merge_checkpoints(flux_a, flux_b, tmp_path / "y", alpha=0.5, block_weights="IN*=0.2")
    with pytest.raises(InputError, match="components must be all or denoiser"):
        merge_checkpoints(flux_a, flux_b, tmp_path / "z", components="vae")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_the_command_line_merges_and_refuses_with_exit_2(tmp_path, models, capsys):
    from trainer.cli import main

    flux_a, flux_c = models("flux")
    assert main(["merge", "checkpoints", str(flux_a), str(flux_c), "--alpha", "1", "--denoiser-only",
                 "--out", str(tmp_path / "ac")]) == 0
    merged, a, c = folder_tensors(tmp_path / "ac"), folder_tensors(flux_a), folder_tensors(flux_c)
    assert all(torch.equal(merged[k], c[k] if k.startswith("transformer/") else a[k]) for k in merged)
    assert main(["merge", "checkpoints", str(flux_a), str(flux_c), "--blocks", "OUT*=1", "--out",
                 str(tmp_path / "x")]) == 2
    assert "block weights: 'OUT*' names no block" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_sharded_folders_merge_into_a_folder_that_loads(tmp_path, models):
    """The real folders keep their transformer (and T5) in shards with an index: the merged component is one file
    under the unsharded name, which ``from_pretrained`` finds; a shared sharded component is copied with its index."""
    from trainer.models import load_model

    a, c = models("flux")
    a2 = sharded(sharded(a, tmp_path / "a-transformer"), tmp_path / "a2", "text_encoder_2")
    c2 = sharded(c, tmp_path / "c-shards", "text_encoder_2")
    out = merge_checkpoints(a2, c2, tmp_path / "ac", alpha=1.0).output
    assert [p.name for p in (out / "transformer").glob("*.safetensors")] == ["diffusion_pytorch_model.safetensors"]
    assert len(list((out / "text_encoder_2").glob("*.safetensors"))) == 2
    merged, expected = folder_tensors(out), folder_tensors(c)
    assert merged.keys() == expected.keys() and all(torch.equal(merged[k], expected[k]) for k in merged)
    assert load_model(out).info.architecture == "flux"


def test_per_block_weights_name_the_transformers_own_blocks(tmp_path, models):
    """Flux: ``transformer_blocks.N`` (double) and ``single_transformer_blocks.N`` in a folder, BFL's
    ``double_blocks.N`` and ``single_blocks.N`` in its single file; the rest (embedders, final layer, encoders, VAE)
    is BASE."""
    from trainer.merge.blocks import transformer_block_of, transformer_blocks

    a, c = models("flux")
    out = merge_checkpoints(a, c, tmp_path / "blocks", alpha=0.5,
                            block_weights="SINGLE_TRANSFORMER_BLOCKS.*=1, transformer_blocks.0=0").output
    tensors_a, tensors_c = folder_tensors(a, text_encoders=False), folder_tensors(c, text_encoders=False)
    merged = folder_tensors(out, text_encoders=False)
    seen = set()
    for key, value in merged.items():
        block = transformer_block_of(key)
        weight = (1.0 if block.startswith("single_transformer_blocks.") else
                  0.0 if block == "transformer_blocks.0" else 0.5)
        seen.add(weight)
        blend = tensors_a[key].float() * (1 - weight) + tensors_c[key].float() * weight
        assert torch.allclose(value.float(), blend, atol=1e-6), key
    assert seen == {0.0, 0.5, 1.0}
    assert transformer_block_of("transformer/x_embedder.weight") == transformer_block_of("vae/decoder.up_blocks.0.w") \
        == "BASE"
    bfl = ["img_in.weight", "double_blocks.0.img_attn.qkv.weight", "single_blocks.1.linear1.weight",
           "single_blocks.0.linear2.weight", "final_layer.linear.weight"]
    assert transformer_blocks(bfl) == ["BASE", "double_blocks.0", "single_blocks.0", "single_blocks.1"]
