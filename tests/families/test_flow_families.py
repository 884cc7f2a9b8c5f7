"""SD 3.5, Flux.1, Chroma and ERNIE-Image through the registry, on tiny models built from their real classes:
flow-matching LoRA learns, its diffusers file loads with the family's own pipeline and ``load_lora_weights`` and
gives the very image the trained adapter gave, a stopped and resumed run ends where an uninterrupted one does, and
frozen-layer training moves only the chosen blocks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config
from tests.families.harness import TrainedRun, assert_resume_equals_uninterrupted, lora_config, train
from tests.trainer.helpers import run_in_process
from trainer.families import family
from trainer.protocol import EXIT_OK, Failed, Finished, Sample

FLOW_FAMILIES = ["sd3", "flux", "chroma", "ernieimage"]
FLUX_FROZEN_BLOCK = "single_transformer_blocks.1"


def pipeline(model_dir: Path, arch: str):
    import diffusers

    pipe = getattr(diffusers, family(arch).pipeline_class).from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int) -> np.ndarray:
    import diffusers

    from tests.families.test_chroma_single_files import masked_prompt

    # Chroma as it was trained and as Kamaal draws it: its T5 masks as keep/drop (diffusers' own call adds them).
    text = masked_prompt(pipe, prompt) if isinstance(pipe, diffusers.ChromaPipeline) else {"prompt": prompt}
    image = pipe(**text, width=64, height=64, num_inference_steps=3, guidance_scale=7.5,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory, tiny_models, shapes_dataset) -> Callable[[str], TrainedRun]:
    """``lora_runs(arch)``: the family's LoRA run (its text encoders trained where they take LoRA), trained on first
    use and read by the learning, file, resume and kohya-layout tests below."""
    runs: dict[str, TrainedRun] = {}

    def run(arch: str) -> TrainedRun:
        if arch not in runs:
            trains_text = any(spec.lora for spec in family(arch).text_encoders)  # Chroma's T5 alone takes no LoRA
            config = lora_config(tiny_models[arch], shapes_dataset, arch,
                                 lora={"rank": 4, "alpha": 8.0, "train_text_encoder": trains_text})
            runs[arch] = train(config, tmp_path_factory.mktemp(f"{arch}-lora") / "run")
        return runs[arch]

    return run


@pytest.fixture(scope="module")
def frozen_runs(tmp_path_factory, tiny_models, shapes_dataset) -> Callable[[str, str], TrainedRun]:
    """``frozen_runs(arch, block)``: a frozen-layer run training only ``block``, trained on first use."""
    runs: dict[tuple[str, str], TrainedRun] = {}

    def run(arch: str, block: str) -> TrainedRun:
        if (arch, block) not in runs:
            config = diffusion_config(tiny_models[arch], shapes_dataset, arch, mode="frozen",
                                      frozen={"trainable": [block]},
                                      training={"steps": 12, "learning_rate": 1e-3, "eval_every": 6})
            runs[arch, block] = train(config, tmp_path_factory.mktemp(f"{arch}-frozen") / "run")
        return runs[arch, block]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("arch", FLOW_FAMILIES)
def test_flow_matching_lora_learns_and_its_file_reproduces_the_trained_adapter(lora_runs, tiny_models, arch):
    model = tiny_models[arch]
    run = lora_runs(arch)
    rec = run.recorder
    curve = run.heldout_curve()
    # Measured (seed 1, 30 steps): sd3 1.66 → 1.38 (0.83×), flux 1.42 → 1.16 (0.82×), chroma 1.45 → 1.13 (0.78×),
    # ernieimage 1.63 → 1.29 (0.79×).
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    outputs = [Path(p) for p in rec.of(Finished)[0].outputs]
    lora_file = outputs[-1]  # the diffusers file; the kohya file comes first (tested below)
    assert lora_file.name == "pytorch_lora_weights.safetensors" and len(outputs) == 2
    with safe_open(lora_file, "pt") as handle:
        keys = set(handle.keys())
        assert json.loads(handle.metadata()["kamaal.config"])["model"]["architecture"] == arch
    clip_encoders = {spec.component for spec in family(arch).text_encoders if spec.tokenizer_kind == "clip"}
    assert {key.split(".")[0] for key in keys} == {"transformer"} | clip_encoders  # T5 stays frozen
    assert all(key.endswith((".lora_A.weight", ".lora_B.weight")) for key in keys)
    assert any(".to_q." in key for key in keys if key.startswith("transformer."))

    final = rec.of(Sample)[-1]
    assert final.step == 30
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(model, arch)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    loaded = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(loaded - trained).max() <= 2
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture


@pytest.mark.slow
@pytest.mark.parametrize("arch", FLOW_FAMILIES)
def test_flow_matching_resume_equals_uninterrupted(tmp_path, lora_runs, arch):
    """Resumed from a checkpoint, the LoRA run (text encoders' adapters too) ends where the uninterrupted one did."""
    assert_resume_equals_uninterrupted(lora_runs(arch), tmp_path / "resumed")


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "block"), [("sd3", "transformer_blocks.1"), ("flux", FLUX_FROZEN_BLOCK),
                                           ("ernieimage", "layers.1")])
def test_frozen_layers_of_a_transformer_only_chosen_blocks_move(frozen_runs, tiny_models, arch, block):
    """Frozen-layer training moves only the named transformer block, and the diffusers folder it writes loads
    with the family's own pipeline and draws the run's final sample."""
    model = tiny_models[arch]
    run = frozen_runs(arch, block)
    rec = run.recorder
    folder = run.outputs[0]  # the diffusers folder (Flux: then the BFL single file)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(model / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith(f"{block}.") for name in moved)
    curve = run.heldout_curve()
    assert curve[-1] < curve[0]
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(draw(pipeline(folder, arch), final.prompts[0], final.seeds[0]) - trained).max() <= 2


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["chroma", "ernieimage"])
def test_dreambooth_draws_missing_class_images_with_the_familys_pipeline_and_trains_the_prior_term(
        tmp_path, tiny_models, shapes_dataset, arch, monkeypatch):
    """DreamBooth with prior preservation on a flow family: the missing class images are drawn by the family's own
    pipeline (Chroma's with real classifier-free guidance), every step has an instance and a class term, and the
    LoRA files come out."""
    from trainer.jobs.diffusion import DiffusionJob

    seen: list[bool] = []
    original = DiffusionJob._batch_loss

    def spy(self, examples, is_class, indices):
        seen.append(is_class)
        return original(self, examples, is_class, indices)

    monkeypatch.setattr(DiffusionJob, "_batch_loss", spy)
    class_dir = tmp_path / "class"
    config = diffusion_config(tiny_models[arch], shapes_dataset, arch, mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 2},
                              training={"steps": 4, "eval_every": 2}, sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    drawn = sorted(class_dir.glob("class-*.png"))
    assert len(drawn) == 2 and all(Image.open(p).size == (64, 64) for p in drawn)
    assert seen.count(True) == 4 and seen.count(False) == 4
    outputs = [Path(p) for p in rec.of(Finished)[0].outputs]
    assert outputs[-1].name == "pytorch_lora_weights.safetensors" and all(p.is_file() for p in outputs)


def test_chroma_draws_sigma_from_lodestones_training_density():
    """Chroma's σ (ChromaEngine, from the job's uniform draws): the density −7.7·(σ − ½)² + 2 on [0, 1] that
    lodestones' trainer samples, unshifted — symmetric about ½, every noise level reachable, and the share of σ in
    [¼, ¾] its integral there, 0.9198 / 1.3583 = 0.677 (uniform: 0.5; logit-normal: 0.71)."""
    from trainer.diffusion.engine_chroma import chroma_sigmas

    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    sigma = chroma_sigmas(u)
    assert 0.0 <= float(sigma.min()) < 0.01 and 0.99 < float(sigma.max()) <= 1.0
    middle = float(((sigma >= 0.25) & (sigma <= 0.75)).float().mean())
    assert abs(middle - (1 - 7.7 / 96) / (2 - 7.7 / 12)) < 0.005, middle
    quantiles = chroma_sigmas(torch.tensor([0.1, 0.5, 0.9]))
    assert abs(float(quantiles[1]) - 0.5) < 0.002 and abs(float(quantiles[0] + quantiles[2]) - 1) < 0.002


def test_fusing_into_a_flow_family_gets_as_far_as_the_lora(tmp_path, tiny_models):
    from trainer.errors import InputError
    from trainer.merge.fuse import fuse_lora

    # Merges of this family are available (tests/merge/test_family_models_*): fusing gets as far as the LoRA.
    with pytest.raises(InputError, match=r"LoRA: .*missing\.safetensors does not exist"):
        fuse_lora(tiny_models["sd3"], [(tmp_path / "missing.safetensors", 1.0)], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arch", FLOW_FAMILIES)
def test_the_memory_estimate_counts_the_transformer(arch):
    """The estimate reads the denoiser the family names; with the block tree's counts it scales with them."""
    from trainer.config import config_from_dict
    from trainer.memory_estimate import estimate_memory

    config = config_from_dict({"mode": "lora", "model": {"architecture": arch}, "dataset": {"resolution": 1024}})
    reference = estimate_memory(config, "cuda")
    halved = {name: count // 2 if name == "transformer" else count
              for name, count in family(arch).memory.reference_parameters.items()}
    smaller = estimate_memory(config, "cuda", parameters=halved)
    assert reference.activations > 0 and reference.trainable_parameters > 0
    assert smaller.weights < reference.weights and smaller.activations < reference.activations


def delta(tensors: dict, down_key: str, up_key: str, alpha_key: str | None = None) -> torch.Tensor:
    down, up = tensors[down_key].float(), tensors[up_key].float()
    scale = float(tensors[alpha_key]) / down.shape[0] if alpha_key else 1.0
    return (up @ down) * scale


@pytest.mark.slow
def test_the_flux_kohya_file_names_blfs_layers_and_loads_in_diffusers(tmp_path, tiny_models, shapes_dataset):
    """The kohya file in Black Forest Labs' layout (kohya, ComfyUI, Forge): fused ``qkv`` layers, CLIP-L as
    ``lora_te1_``; diffusers' own kohya-Flux converter splits it back and draws the trained image.  Targets
    leave out the single blocks' q, k, v (diffusers' converter assumes the real model's widths there: the
    next test checks those against the model) and the final ``proj_out`` (the converter drops its prefix)."""
    model = tiny_models["flux"]
    targets = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v",
               "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out", "0.proj_out", "1.proj_out"]
    config = diffusion_config(model, shapes_dataset, "flux", lora={"rank": 4, "alpha": 8.0, "train_text_encoder": True,
                                                                   "target_modules": targets})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    kohya_file, diffusers_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    assert kohya_file.name == "tiny.safetensors"
    tensors = load_file(kohya_file)
    modules = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in tensors}
    assert {"lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_txt_attn_qkv",
            "lora_unet_double_blocks_0_img_attn_proj", "lora_unet_double_blocks_0_txt_attn_proj",
            "lora_unet_single_blocks_0_linear2", "lora_unet_single_blocks_1_linear2"} <= modules
    assert any(m.startswith("lora_te1_text_model_encoder_layers_0_self_attn_") for m in modules)
    with safe_open(kohya_file, "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_network_module"] == "networks.lora_flux" and metadata["ss_base_model_version"] == "flux1"

    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    for lora_file in (kohya_file, diffusers_file):
        pipe = pipeline(model, "flux")
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
        assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() <= 2, lora_file.name


@pytest.mark.slow
def test_the_flux_kohya_file_fuses_q_k_v_in_the_order_and_rows_of_blfs_layers(lora_runs, tiny_models):
    """Every trained module of the default targets, module by module: a double block's to_q/to_k/to_v are the
    three row blocks of ``img_attn.qkv``; a single block's are the first three of ``linear1``, whose MLP rows
    (4× wide) stay zero; ``to_out.0`` is ``img_attn.proj``.  Widths come from the model's own layers."""
    from trainer.models import load_model

    model = tiny_models["flux"]
    kohya_file, diffusers_file = lora_runs("flux").outputs
    kohya, reference = load_file(kohya_file), load_file(diffusers_file)
    transformer = load_model(model).pipeline.transformer
    width = transformer.transformer_blocks[0].attn.to_q.out_features
    mlp = transformer.single_transformer_blocks[0].proj_mlp.out_features

    def kohya_delta(name: str) -> torch.Tensor:
        return delta(kohya, f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha")

    def trained(module: str) -> torch.Tensor:
        return delta(reference, f"transformer.{module}.lora_A.weight", f"transformer.{module}.lora_B.weight")

    checked = 0
    for i in range(len(transformer.transformer_blocks)):
        fused = kohya_delta(f"lora_unet_double_blocks_{i}_img_attn_qkv")
        assert fused.shape == (3 * width, width)
        for j, part in enumerate(("to_q", "to_k", "to_v")):
            torch.testing.assert_close(fused[j * width:(j + 1) * width], trained(f"transformer_blocks.{i}.attn.{part}"))
            checked += 1
        torch.testing.assert_close(kohya_delta(f"lora_unet_double_blocks_{i}_img_attn_proj"),
                                   trained(f"transformer_blocks.{i}.attn.to_out.0"))
        checked += 1
    for i in range(len(transformer.single_transformer_blocks)):
        fused = kohya_delta(f"lora_unet_single_blocks_{i}_linear1")
        assert fused.shape == (3 * width + mlp, width)
        for j, part in enumerate(("to_q", "to_k", "to_v")):
            torch.testing.assert_close(fused[j * width:(j + 1) * width],
                                       trained(f"single_transformer_blocks.{i}.attn.{part}"))
            checked += 1
        assert torch.count_nonzero(fused[3 * width:]) == 0  # the MLP input was not trained
    trained_modules = {key.rsplit(".lora_", 1)[0] for key in reference if key.startswith("transformer.")}
    assert checked == len(trained_modules)  # nothing trained is missing from the kohya file


@pytest.mark.slow
def test_captions_cached_on_disk_are_not_encoded_again_after_a_resume(tmp_path, tiny_models, shapes_dataset,
                                                                       monkeypatch):
    """dataset.cache_text = "disk": T5's embeddings go to RUN/cache/text once per caption; a resumed run reads
    them instead of running the text encoders, and ends exactly where an uninterrupted one does."""
    from tests.trainer.helpers import ScriptedCommands
    from trainer.diffusion.engines import SD3Engine
    from trainer.protocol import Stop

    config = diffusion_config(tiny_models["flux"], shapes_dataset, "flux", dataset={"cache_text": "disk"},
                              training={"steps": 8, "eval_every": 4}, sampling={"inference_steps": 2})
    code, straight = run_in_process(config, tmp_path / "straight")
    assert code == EXIT_OK, straight.of(Failed)
    code, stopped = run_in_process(config, tmp_path / "split", ScriptedCommands({4: [Stop(save=True)]}))
    assert code == EXIT_OK, stopped.of(Failed)
    captions = {p.read_text(encoding="utf-8") for p in shapes_dataset.glob("*.txt")}
    assert len(list((tmp_path / "split" / "cache" / "text").glob("*.safetensors"))) == len(captions)

    calls: list[list[str]] = []
    original = SD3Engine.encode_prompts

    def counting(self, encoders, prompts, device):
        calls.append(list(prompts))
        return original(self, encoders, prompts, device)

    monkeypatch.setattr(SD3Engine, "encode_prompts", counting)
    code, resumed = run_in_process(config, tmp_path / "split", resume=True)
    assert code == EXIT_OK, resumed.of(Failed)
    assert calls == []  # every caption came from the disk
    a = load_file(straight.of(Finished)[0].outputs[-1])
    b = load_file(resumed.of(Finished)[0].outputs[-1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_flux_layouts_convert_both_ways_and_agree_with_diffusers_own_converter():
    """diffusers → BFL → diffusers is exact on the tiny model; on the real Flux.1-dev shape (19 double, 38
    single blocks, width 3072) diffusers' own BFL converter reads what Kamaal writes back into every key,
    shape and value (rows of the true heights, one column each, so the check stays small)."""
    import diffusers
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from trainer.models.flux_layout import to_diffusers, to_original
    from trainer.models.tiny import tiny_pipeline

    tiny = tiny_pipeline("flux").transformer
    state = tiny.state_dict()
    back = to_diffusers(to_original(state, dict(tiny.config)), dict(tiny.config))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)

    with torch.device("meta"):
        real = diffusers.FluxTransformer2DModel()
    generator = torch.Generator().manual_seed(0)
    thin = {key: torch.randn((*value.shape[:1], *([1] if value.dim() > 1 else [])), generator=generator)
            for key, value in real.state_dict().items()}
    original = to_original(thin, dict(real.config))
    assert "double_blocks.18.img_attn.qkv.weight" in original and "single_blocks.37.linear1.weight" in original
    assert original["single_blocks.0.linear1.weight"].shape[0] == 3 * 3072 + 4 * 3072
    converted = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert converted.keys() == thin.keys()
    assert all(torch.equal(converted[k], thin[k]) for k in thin)


@pytest.mark.slow
def test_a_frozen_flux_run_also_writes_the_bfl_transformer_file(frozen_runs):
    from trainer.models.flux_layout import to_diffusers

    folder, single = frozen_runs("flux", FLUX_FROZEN_BLOCK).outputs
    original = load_file(single)
    assert any(key.startswith("double_blocks.0.img_attn.qkv") for key in original)
    trained = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    config_json = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    back = to_diffusers(original, config_json)
    assert back.keys() == trained.keys() and all(torch.equal(back[k], trained[k]) for k in trained)


def test_the_sd3_kohya_file_fuses_q_k_v_into_stabilitys_layers_as_comfyui_applies_them(tmp_path):
    """SD 3.5's kohya file (kohya's ``networks/lora_sd3.py`` names), module by module, on a Medium-style tiny
    MMDiT (MMDiT-X's ``attn2`` in block 0) with adapters on every kind of layer and random ups: q, k and v of the
    image stream, the text stream and the second attention are the three row blocks of ``x_block.attn.qkv``,
    ``context_block.attn.qkv`` and ``x_block.attn2.qkv``; the last text modulation and the final layer's hold
    their halves swapped; CLIP-L is ``lora_te1_``, CLIP-G ``lora_te2_``.  Then applied as ComfyUI does (every
    ``lora_unet_`` name is a ``diffusion_model.`` weight with dots as underscores; W += alpha/rank · up @ down)
    to Stability's layout and read back by diffusers' own SD3 converter: the very weights the diffusers/peft file
    gives."""
    from types import SimpleNamespace

    import diffusers
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    from trainer.families.sd3 import sai_layout
    from trainer.lora_formats import add_lora_adapters, export_kohya_transformer_lora, export_transformer_lora
    from trainer.models.sd3_layout import to_original
    from trainer.models.tiny import tiny_pipeline

    pipe = tiny_pipeline("sd3")
    config = {k: v for k, v in pipe.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(**config | {"dual_attention_layers": [0], "qk_norm": "rms_norm"})
    base = to_original(transformer.state_dict(), dict(transformer.config))
    targets = ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out",
               "norm1_context.linear", "norm_out.linear", "ff.net.0.proj", "proj_out"]
    encoders = [pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3]
    add_lora_adapters(transformer, encoders, SimpleNamespace(rank=2, alpha=3.0, dropout=0.0, target_modules=targets),
                      True)
    generator = torch.Generator().manual_seed(1)
    for module in (transformer, *encoders):
        for name, parameter in module.named_parameters():
            if "lora_B" in name:  # trained adapters: B is no longer zero
                parameter.data = torch.randn(parameter.shape, generator=generator)
    kohya_file = export_kohya_transformer_lora(tmp_path / "sd3.safetensors", "sd3", transformer, encoders, "sd3", {})
    diffusers_file = export_transformer_lora(tmp_path / "peft.safetensors", "sd3", transformer, encoders, {})
    kohya, reference = load_file(kohya_file), load_file(diffusers_file)
    with safe_open(kohya_file, "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_network_module"] == "networks.lora_sd3" and metadata["ss_base_model_version"] == "sd3"

    def trained(key_prefix: str) -> torch.Tensor:
        return delta(reference, f"{key_prefix}.lora_A.weight", f"{key_prefix}.lora_B.weight")

    def kohya_delta(name: str) -> torch.Tensor:
        return delta(kohya, f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha")

    layout = sai_layout(dict(transformer.config))
    modules = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in kohya}
    trained_modules = {key.rsplit(".lora_", 1)[0] for key in reference}
    unet = {m.removeprefix("transformer.") for m in trained_modules if m.startswith("transformer.")}
    assert {m for m in modules if m.startswith("lora_unet_")} == {"lora_unet_" + layout[m][0].replace(".", "_")
                                                                   for m in unet}
    assert {"lora_unet_joint_blocks_0_x_block_attn_qkv", "lora_unet_joint_blocks_0_context_block_attn_qkv",
            "lora_unet_joint_blocks_0_x_block_attn2_qkv", "lora_unet_joint_blocks_0_x_block_attn2_proj",
            "lora_unet_joint_blocks_1_context_block_adaLN_modulation_1", "lora_unet_final_layer_adaLN_modulation_1",
            "lora_unet_final_layer_linear", "lora_unet_joint_blocks_0_x_block_mlp_fc1"} <= modules
    checked = 0
    for module in sorted(unet):
        original, offset, rows, total, swap = layout[module]
        fused = kohya_delta("lora_unet_" + original.replace(".", "_"))
        part = fused[offset: offset + rows] if rows else fused
        if swap:
            part = torch.cat(part.chunk(2, dim=0)[::-1])
        assert fused.shape[0] == (total or part.shape[0])
        torch.testing.assert_close(part, trained(f"transformer.{module}"))
        checked += 1
    for index, component in ((1, "text_encoder"), (2, "text_encoder_2")):
        ours = sorted(m for m in trained_modules if m.startswith(f"{component}."))
        assert ours and not any(m.startswith("text_encoder_3.") for m in trained_modules)  # T5 stays frozen
        for module in ours:
            name = f"lora_te{index}_" + module.removeprefix(f"{component}.").replace(".", "_")
            torch.testing.assert_close(kohya_delta(name), trained(module))
            checked += 1
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj" in modules
    assert "lora_te2_text_model_encoder_layers_0_self_attn_q_proj" in modules
    assert checked == len(trained_modules)  # nothing trained is missing from the kohya file

    # ComfyUI's way: every lora_unet_ name is a diffusion_model. weight, dots as underscores.
    key_map = {"lora_unet_" + key.removesuffix(".weight").replace(".", "_"): key for key in base
               if key.endswith(".weight")}
    applied = dict(base)
    for name in (m for m in modules if m.startswith("lora_unet_")):
        key = key_map[name]  # no kohya module that ComfyUI would drop as "lora key not loaded"
        applied[key] = applied[key] + kohya_delta(name)
    converted = convert_sd3_transformer_checkpoint_to_diffusers(dict(applied))
    expected = {key: value.detach().clone() for key, value in transformer.state_dict().items()
                if "lora_" not in key}
    expected = {key.replace(".base_layer.", "."): value for key, value in expected.items()}
    for module in unet:
        expected[f"{module}.weight"] = expected[f"{module}.weight"] + trained(f"transformer.{module}")
    assert converted.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(converted[key], expected[key], msg=key)
