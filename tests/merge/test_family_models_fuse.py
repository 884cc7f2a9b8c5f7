"""fuse-lora into the transformer families' diffusers folders: the fused model draws, through the family's own
pipeline and seed, the image the base model draws with the LoRA loaded by ``load_lora_weights`` at that strength;
the kohya/ComfyUI file (BFL's fused qkv for Flux, musubi's names for Qwen-Image, …) fuses to the same weights as the
diffusers file; the family's single file is written from the fused folder; refusals name the file or field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.merge.family_models import MAIN_FAMILIES, folder_tensors, transformer_families
from trainer.errors import InputError
from trainer.families import family, kohya_facts
from trainer.merge.fuse import fuse_lora

STRENGTH = 0.7


def pipeline(folder):
    import diffusers

    pipe = getattr(diffusers, family(_arch(folder)).pipeline_class).from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _arch(folder) -> str:
    from trainer.models import inspect_model

    return inspect_model(folder).architecture


def draw(pipe, seed: int = 3) -> np.ndarray:
    from trainer.diffusion.sampling import guidance_arguments

    image = pipe(prompt="a red circle", width=64, height=64, num_inference_steps=2, **guidance_arguments(pipe, 4.0),
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def random_lora_files(model_dir, arch: str, out_dir) -> tuple:
    """A LoRA with random factors on the family's attention (and, for Flux, the single blocks' MLP input and the
    swapped final norm; CLIP where the family trains it), written by Kamaal's own exporters: the diffusers file and,
    where the family has one, the kohya file in its original layout."""
    from types import SimpleNamespace

    from trainer.lora_formats import add_lora_adapters, export_kohya_transformer_lora, export_transformer_lora
    from trainer.models import load_model

    pipe = load_model(model_dir).pipeline
    facts = family(arch)
    names = {name.rsplit(".", 1)[-1] for name, _ in pipe.transformer.named_modules()} | {
        name for name, _ in pipe.transformer.named_modules()}
    targets = [t for t in (*(facts.lora_target_modules or ("to_q", "to_k", "to_v", "to_out.0")), "proj_mlp",
                           "norm_out.linear") if t in names]
    encoders = [getattr(pipe, spec.component) for spec in facts.text_encoders]
    trains_text = any(spec.lora for spec in facts.text_encoders)
    lora = SimpleNamespace(rank=4, alpha=8.0, dropout=0.0, target_modules=targets, adapter="lora")
    torch.manual_seed(5)  # peft draws lora_A from the global generator: the same LoRA whatever ran before
    add_lora_adapters(pipe.transformer, encoders, lora, trains_text)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in [*pipe.transformer.named_parameters(),
                                *(p for e in encoders for p in e.named_parameters())]:
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    diffusers_file = export_transformer_lora(out_dir / "lora-diffusers.safetensors", arch, pipe.transformer,
                                             encoders if trains_text else [], {})
    kohya_file = export_kohya_transformer_lora(out_dir / "lora-kohya.safetensors", arch, pipe.transformer,
                                               encoders if trains_text else [], "lora", {})
    return diffusers_file, kohya_file


@pytest.fixture(scope="module")
def family_cases(tmp_path_factory):
    from trainer.models.tiny import build_tiny_model

    built: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in built:
            root = tmp_path_factory.mktemp(f"fuse-{arch}")
            base = build_tiny_model(root / "base", arch, seed=0)
            built[arch] = (base, *random_lora_files(base, arch, root))
        return built[arch]

    return get


@pytest.mark.parametrize("arch", MAIN_FAMILIES)
def test_a_fused_model_draws_what_the_base_draws_with_the_lora_loaded(tmp_path, family_cases, arch):
    base, diffusers_file, kohya_file = family_cases(arch)
    summary = fuse_lora(base, [(diffusers_file, STRENGTH)], output_dir=tmp_path / "fused")
    with_lora = pipeline(base)
    with_lora.load_lora_weights(str(diffusers_file), adapter_name="style")
    with_lora.set_adapters(["style"], [STRENGTH])
    expected, fused = draw(with_lora), draw(pipeline(summary.outputs[0]))
    assert np.abs(fused - expected).max() <= 1, arch
    with_lora.set_adapters(["style"], [0.0])
    assert np.abs(fused - draw(with_lora)).max() > 4, arch  # the base model draws another picture
    # Every weight the LoRA names changed, and no other.
    from_diffusers, original = folder_tensors(summary.outputs[0]), folder_tensors(base)
    changed = {k for k in original if not torch.equal(from_diffusers[k], original[k])}
    assert len(changed) == summary.modules == len(load_file(diffusers_file)) // 2
    trained_text = any(key.startswith("text_encoder") for key in changed)
    assert trained_text == any(spec.lora for spec in family(arch).text_encoders)
    if kohya_file is not None:  # the kohya/ComfyUI layout: fused layers split back into diffusers' q, k, v …
        from_kohya = folder_tensors(fuse_lora(base, [(kohya_file, STRENGTH)], output_dir=tmp_path / "k").outputs[0])
        assert all(torch.allclose(from_kohya[k], from_diffusers[k], atol=1e-6) for k in from_diffusers), arch


def test_fused_single_file_is_the_familys_own(tmp_path, family_cases):
    """Flux: BFL's transformer file of the fused model, as a full run writes it (fused qkv)."""
    import json

    from trainer.models.flux_layout import to_diffusers

    base, diffusers_file, _ = family_cases("flux")
    summary = fuse_lora(base, [(diffusers_file, STRENGTH)], output_dir=tmp_path / "fused",
                        output_file=tmp_path / "fused.safetensors")
    folder, single = summary.outputs
    original = load_file(single)
    assert "double_blocks.0.img_attn.qkv.weight" in original
    transformer = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    config = json.loads((folder / "transformer" / "config.json").read_text())
    back = to_diffusers(original, config)
    assert back.keys() == transformer.keys() and all(torch.equal(back[k], transformer[k]) for k in back)


def test_refusals_name_the_file_or_field(tmp_path, family_cases):
    flux, flux_lora, flux_kohya = family_cases("flux")
    zimage, zimage_lora, _ = family_cases("zimage")
    with pytest.raises(InputError, match=r"LoRA: module transformer\.\S+ is not in the base model \(Flux\.1\)"):
        fuse_lora(flux, [(zimage_lora, 1.0)], output_dir=tmp_path / "a")
    with pytest.raises(InputError, match=r"LoRA: .*lora-kohya\.safetensors names the transformer in an original "
                                         r"\(kohya/ComfyUI\) layout \(first: lora_unet_double_blocks_0_img_attn_qkv\), "
                                         r"but Z-Image LoRAs are read in diffusers' layout only"):
        fuse_lora(zimage, [(flux_kohya, 1.0)], output_dir=tmp_path / "b")
    single = tmp_path / "flux.safetensors"
    fuse_lora(flux, [(flux_lora, 1.0)], output_file=single)
    with pytest.raises(InputError, match=r"output: .*flux\.safetensors is a single Flux\.1 file, fused into a single "
                                         r"file of the same layout \(--out-file\)"):
        fuse_lora(single, [(flux_kohya, 1.0)], output_dir=tmp_path / "c")
    with pytest.raises(InputError, match=r"LoRA: module transformer\.\S+ names no weight of flux\.safetensors "
                                         r"\(Flux\.1, whose file is in its original layout: fuse the kohya/ComfyUI"):
        fuse_lora(single, [(flux_lora, 1.0)], output_file=tmp_path / "c.safetensors")
    broken = load_file(flux_lora)
    key = next(k for k in sorted(broken) if k.startswith("transformer.") and k.endswith("lora_B.weight"))
    broken[key][0, 0] = float("nan")
    save_file(broken, str(tmp_path / "nan.safetensors"))
    with pytest.raises(InputError, match=r"base model: .*transformer tensor \S+ holds NaN or infinite values after "
                                         r"fusing .*nothing was written"):
        fuse_lora(flux, [(tmp_path / "nan.safetensors", 1.0)], output_dir=tmp_path / "e")
    (tmp_path / "nan.safetensors").unlink()
    with pytest.raises(InputError, match=r"dtype: a Flux\.1 model is fused in the precision it is stored in"):
        fuse_lora(flux, [(flux_lora, 1.0)], output_dir=tmp_path / "d", dtype="fp16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flux.safetensors"]
    assert kohya_facts("flux").transformer_layout  # the refusal above is about Z-Image's, which has none


def test_the_merge_pages_preview_draws_the_fused_model_as_the_base_with_the_lora(tmp_path, family_cases):
    """The preview task (what the Merge page shows) with a transformer family: the base with the LoRA row and the
    fused model's row draw the same picture."""
    from PIL import Image

    from trainer.merge.preview import render_preview

    base, diffusers_file, _ = family_cases("flux")
    fused = fuse_lora(base, [(diffusers_file, STRENGTH)], output_dir=tmp_path / "fused").outputs[0]
    result = render_preview([{"label": "base + LoRA", "model": str(base), "loras": [[str(diffusers_file), STRENGTH]]},
                             {"label": "fused", "model": str(fused)}], tmp_path / "preview", prompts=["a red circle"],
                            seeds=[2], steps=2, size=64, guidance=3.5)
    with_lora, from_fused = (np.asarray(Image.open(row["images"][0]), dtype=np.int16) for row in result["rows"])
    assert with_lora.shape == (64, 64, 3) and np.abs(with_lora - from_fused).max() <= 1


@pytest.mark.parametrize("arch", [name for name in transformer_families() if name not in MAIN_FAMILIES])
def test_every_other_family_fuses_both_files_to_peft_s_own_merge(tmp_path, arch):
    """The other transformer families, at the weights (no pictures, to stay quick): each file fused into the folder
    gives W + strength·ΔW with ΔW peft's own (``get_delta_weight``) for every adapted module, and nothing else moves."""
    import json
    from types import SimpleNamespace

    import diffusers
    from peft.tuners.lora import LoraLayer

    from trainer.lora_formats import ADAPTER, add_lora_adapters, export_kohya_transformer_lora, export_transformer_lora
    from trainer.models.tiny import build_tiny_model

    base = build_tiny_model(tmp_path / "base", arch, seed=0)
    class_name = json.loads((base / "model_index.json").read_text())["transformer"][1]
    transformer = getattr(diffusers, class_name).from_pretrained(base / "transformer")
    names = {name.rsplit(".", 1)[-1] for name, _ in transformer.named_modules()}
    targets = [t for t in (*(family(arch).lora_target_modules or ("to_q", "to_k", "to_v", "to_out.0")), "proj_mlp")
               if t.rsplit(".", 1)[-1] in names]
    torch.manual_seed(5)
    add_lora_adapters(transformer, [], SimpleNamespace(rank=4, alpha=8.0, dropout=0.0, target_modules=targets,
                                                       adapter="lora"), False)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    expected = {f"transformer/{name}.weight": (layer.get_base_layer().weight.float()
                                               + STRENGTH * layer.get_delta_weight(ADAPTER).float())
                for name, layer in transformer.named_modules() if isinstance(layer, LoraLayer)}
    files = [export_transformer_lora(tmp_path / "d.safetensors", arch, transformer, [], {}),
             export_kohya_transformer_lora(tmp_path / "k.safetensors", arch, transformer, [], "k", {})]
    original = folder_tensors(base)
    for index, file in enumerate(f for f in files if f is not None):
        fused = folder_tensors(fuse_lora(base, [(file, STRENGTH)], output_dir=tmp_path / f"fused-{index}").outputs[0])
        assert {k for k in original if not torch.equal(fused[k], original[k])} == expected.keys(), (arch, file.name)
        assert all(torch.allclose(fused[k].float(), v, atol=1e-5) for k, v in expected.items()), (arch, file.name)


def test_a_sharded_transformer_is_fused_shard_by_shard(tmp_path, family_cases):
    from tests.merge.family_models import sharded

    base, diffusers_file, _ = family_cases("flux")
    plain = fuse_lora(base, [(diffusers_file, STRENGTH)], output_dir=tmp_path / "plain").outputs[0]
    shards = fuse_lora(sharded(base, tmp_path / "sharded"), [(diffusers_file, STRENGTH)],
                       output_dir=tmp_path / "fused").outputs[0]
    assert len(list((shards / "transformer").glob("*-of-00002.safetensors"))) == 2
    assert (shards / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    expected, fused = folder_tensors(plain), folder_tensors(shards)
    assert expected.keys() == fused.keys() and all(torch.equal(expected[k], fused[k]) for k in fused)


@pytest.mark.parametrize("arch", ["flux", "qwenimage"])
def test_the_familys_single_file_fuses_in_its_own_layout(tmp_path, family_cases, arch):
    """BFL's Flux file with the kohya file (fused qkv as it is), ComfyUI's Qwen-Image file with the diffusers one: the
    fused file is what the family's writer makes of the fused folder."""
    from tests.merge.family_models import write_single_file

    base, diffusers_file, kohya_file = family_cases(arch)
    lora = kohya_file if arch == "flux" else diffusers_file
    folder = fuse_lora(base, [(lora, STRENGTH)], output_dir=tmp_path / "fused").outputs[0]
    expected = load_file(write_single_file(folder, tmp_path / "expected.safetensors"))
    single = write_single_file(base, tmp_path / "base.safetensors")
    fused = load_file(fuse_lora(single, [(lora, STRENGTH)], output_file=tmp_path / "fused.safetensors").outputs[0])
    assert fused.keys() == expected.keys()
    assert all(torch.allclose(fused[k], expected[k], atol=1e-6) for k in fused), arch
    assert any(not torch.equal(fused[k], v) for k, v in load_file(single).items())
