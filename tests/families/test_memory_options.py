"""What makes a big family fit a consumer GPU, on tiny models: the frozen base stored in nf4 / int8 / fp8
(``model.base_quantization``) still trains a LoRA that loads on the full-precision base, and the text encoders
waiting off the GPU (``model.text_encoder_device``) change nothing but where they wait — the previews drawn
from prompts encoded once are the images drawn from the text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.config import ConfigError, config_from_dict
from trainer.families import TINY_FAMILIES, family
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder

KINDS = ["nf4", "int8", "fp8"]


def flux_transformer(seed: int = 0) -> torch.nn.Module:
    import diffusers

    name, config = family("flux").tiny["denoiser"]
    torch.manual_seed(seed)  # widths of 64 and more: the layers bitsandbytes and torchao see in real models
    return getattr(diffusers, name).from_config({**config, "attention_head_dim": 32, "num_attention_heads": 2,
                                                 "axes_dims_rope": (8, 12, 12)}).eval()


def flux_inputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens, text = 16, 8
    return {"hidden_states": torch.randn(1, tokens, model.config.in_channels, generator=generator),
            "encoder_hidden_states": torch.randn(1, text, model.config.joint_attention_dim, generator=generator),
            "pooled_projections": torch.randn(1, model.config.pooled_projection_dim, generator=generator),
            "timestep": torch.tensor([0.5]), "guidance": torch.tensor([3.5]),
            "img_ids": torch.zeros(tokens, 3), "txt_ids": torch.zeros(text, 3)}


@pytest.mark.parametrize("kind", KINDS)
def test_a_quantized_base_stores_its_blocks_in_fewer_bytes_and_computes_nearly_what_it_did(kind):
    from trainer.memory_estimate import QUANTIZED_BYTES
    from trainer.models.quantize import quantize_denoiser, quantized_linears, weight_bytes

    model = flux_transformer()
    inputs = flux_inputs(model)
    blocks = family("flux").blocks
    with torch.no_grad():
        reference = model(**inputs).sample
    block_weights = sum(linear.weight.numel() for _, linear in quantized_linears(model, blocks))
    others = {name: value.clone() for name, value in model.state_dict().items() if not name.startswith(blocks)}
    before = weight_bytes(model)

    count = quantize_denoiser(model, blocks, kind, "cpu", torch.float32)

    assert count == block_weights > 0
    assert not list(quantized_linears(model, blocks))  # no plain Linear left inside the blocks
    saved = before - weight_bytes(model)
    expected = block_weights * (4 - QUANTIZED_BYTES[kind])  # fp32 → the kind's bytes per weight
    assert 0.9 * expected < saved < 1.1 * expected, (saved, expected)
    after = model.state_dict()
    for name, value in others.items():  # embedders, norms and the final layer: untouched, bit for bit
        assert torch.equal(after[name], value), name
    with torch.no_grad():
        output = model(**inputs).sample
    error = ((output - reference).norm() / reference.norm()).item()
    # Measured: nf4 0.07, int8 0.004, fp8 0.03; a broken layer (wrong rows, no scale) gives ~1.
    assert error < {"nf4": 0.2, "int8": 0.02, "fp8": 0.1}[kind], error


@pytest.mark.slow
def test_lora_learns_on_an_nf4_base_and_its_file_loads_on_the_full_precision_one(tmp_path, tiny_models,
                                                                                shapes_dataset):
    import shutil

    import diffusers

    model = tmp_path / "tiny-flux-64"  # the tiny model with a transformer 64 wide: nf4's blocks of 64 fit
    shutil.copytree(tiny_models["flux"], model)
    flux_transformer().save_pretrained(model / "transformer")
    config = diffusion_config(model, shapes_dataset, "flux", model={"architecture": "flux", "path": str(model),
                                                                    "base_quantization": "nf4"})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    run = RunFolder(tmp_path / "run")
    curve = [row["heldout_loss"] for row in run.read_metrics() if "heldout_loss" in row]
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve
    assert "in nf4 (bitsandbytes)" in run.log_path.read_text(encoding="utf-8")

    lora_file = Path(rec.of(Finished)[0].outputs[-1])
    pipe = diffusers.FluxPipeline.from_pretrained(model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def picture() -> np.ndarray:
        image = pipe("a red circle", width=64, height=64, num_inference_steps=3,
                     generator=torch.Generator("cpu").manual_seed(7)).images[0]
        return np.asarray(image, dtype=np.int16)

    plain = picture()
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    adapted = picture()
    trained = np.asarray(Image.open(rec.of(Sample)[-1].paths[0]).convert("RGB"), dtype=np.int16)
    # The adapter moves the full-precision base's picture the way it moved the nf4 base's during training.
    assert np.abs(adapted - plain).max() > 10
    assert np.abs(adapted - trained).mean() < np.abs(plain - trained).mean()


@pytest.mark.slow
def test_text_encoders_off_the_gpu_change_nothing_but_where_they_wait(tmp_path, tiny_models, shapes_dataset):
    model = tiny_models["flux"]
    results = {}
    for placement in ("gpu", "cpu"):
        config = diffusion_config(model, shapes_dataset, "flux", training={
            "steps": 6, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 3, "seed": 1},
            model={"architecture": "flux", "path": str(model), "text_encoder_device": placement},
            sampling={"prompts": ["a red circle"], "seeds": [7], "inference_steps": 2, "every_n_steps": 3})
        code, rec = run_in_process(config, tmp_path / placement)
        assert code == EXIT_OK, rec.of(Failed)
        results[placement] = (load_file(rec.of(Finished)[0].outputs[-1]),
                              [Path(p).read_bytes() for sample in rec.of(Sample) for p in sample.paths],
                              RunFolder(tmp_path / placement).log_path.read_text(encoding="utf-8"))
    (gpu_lora, gpu_samples, gpu_log), (cpu_lora, cpu_samples, cpu_log) = results["gpu"], results["cpu"]
    assert gpu_lora.keys() == cpu_lora.keys()
    assert all(torch.equal(gpu_lora[key], cpu_lora[key]) for key in gpu_lora)
    assert len(gpu_samples) == 2 and gpu_samples == cpu_samples  # steps 3 and 6
    assert "off the GPU" in cpu_log and "off the GPU" not in gpu_log


@pytest.mark.parametrize("arch", TINY_FAMILIES)
def test_a_preview_from_prompts_encoded_once_is_the_preview_from_the_text(arch, tiny_models, tmp_path):
    from trainer.diffusion.sampling import draw, encode_sample_prompts, prepared
    from trainer.models.loading import load_model

    # Kamaal's loader, as a run loads it (Qwen-Image 2.1's folder names the Qwen3-VL processor, read as text), set
    # up as previews draw (HiDream's: at its tiny transformer's size).
    pipe = prepared(load_model(tiny_models[arch]).pipeline, arch)
    prompts = ["a red circle", ""]  # the empty prompt too: SDXL zeroes an empty negative prompt
    # An edit pipeline whose text encoder reads the control (Qwen-Image-Edit's) draws from one, encoded with it.
    call, shown = {}, None
    if family(arch).text_reads_controls:
        from trainer.diffusion.engine_qwenedit import QwenEditEngine

        call = {"image": [Image.new("RGB", (64, 48), (200, 40, 40))]}
        shown = QwenEditEngine.condition_images(pipe, call["image"])
    encoded = encode_sample_prompts(pipe, arch, prompts, 7.5, "cpu", image=shown)
    values = [v for entry in encoded.values() for value in entry.values()  # Z-Image: a list per prompt
              for v in (value if isinstance(value, list) else [value])]
    if family(arch).prompt_outputs:
        assert values and all(value.device.type == "cpu" for value in values)
    else:  # its pipeline takes no encoded prompts (Ideogram 4): each preview is drawn from its text
        assert encoded == {}
    from_text, _, _ = draw(pipe, prompts, [3], 64, 64, 2, 7.5, tmp_path / "text", call_arguments=call)
    from_embeds, _, _ = draw(pipe, prompts, [3], 64, 64, 2, 7.5, tmp_path / "embeds", conditioning=encoded,
                             call_arguments=call)
    for a, b in zip(from_text, from_embeds, strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), (arch, a)


def test_the_config_refuses_what_these_options_cannot_do():
    base = {"mode": "frozen", "model": {"architecture": "sd15", "base_quantization": "nf4"}}
    with pytest.raises(ConfigError, match=r"model\.base_quantization: nf4 stores frozen base weights"):
        config_from_dict(base)
    full = {"mode": "dreambooth", "model": {"architecture": "sd15", "base_quantization": "int8"},
            "dreambooth": {"train_full_unet": True}}
    with pytest.raises(ConfigError, match=r"model\.base_quantization"):
        config_from_dict(full)
    trained = {"mode": "lora", "model": {"architecture": "sd15", "text_encoder_device": "cpu"},
               "lora": {"train_text_encoder": True}}
    with pytest.raises(ConfigError, match=r"model\.text_encoder_device: cpu cannot hold text encoders that LoRA"):
        config_from_dict(trained)
    uncached = {"mode": "lora", "model": {"architecture": "sd15", "text_encoder_device": "cpu"},
                "dataset": {"cache_text": "off"}}
    with pytest.raises(ConfigError, match=r"model\.text_encoder_device: cpu needs the captions cached"):
        config_from_dict(uncached)
    assert config_from_dict({"mode": "lora", "model": {"architecture": "flux", "base_quantization": "fp8",
                                                       "text_encoder_device": "cpu"}}).model.base_quantization == "fp8"


def test_each_familys_quantizable_share_is_what_its_real_denoiser_holds():
    import json

    import diffusers

    from trainer.families import FAMILIES
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.quantize import quantized_linears

    checked = 0
    for name, model in FAMILIES.items():
        for folder in sorted(set(model.config_folders.values())):
            path = MODEL_CONFIGS / folder / model.denoiser / "config.json"
            if not path.is_file():
                continue
            config = json.loads(path.read_text(encoding="utf-8"))
            with torch.device("meta"):
                denoiser = getattr(diffusers, config["_class_name"]).from_config(config)
            total = sum(p.numel() for p in denoiser.parameters())
            share = sum(layer.weight.numel() for _, layer in quantized_linears(denoiser, model.blocks)) / total
            assert abs(share - model.memory.quantizable_share) < 0.01, (name, folder, share)
            checked += 1
    assert checked >= 5


def test_each_familys_text_quantizable_share_is_what_its_real_text_encoders_hold():
    """``MemoryFacts.text_quantizable_share`` against the real text encoders built on the meta device from the shipped
    configs (the families whose encoders declare blocks for ``model.text_encoder_quantization``)."""
    import transformers

    from trainer.families import FAMILIES
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.quantize import quantized_linears

    checked = 0
    for name, model in FAMILIES.items():
        if not any(spec.blocks for spec in model.text_encoders):
            continue
        for folder in sorted(set(model.config_folders.values())):
            total = quantized = 0
            for spec in model.text_encoders:
                config = transformers.AutoConfig.from_pretrained(MODEL_CONFIGS / folder / spec.component)
                with torch.device("meta"):
                    encoder = getattr(transformers, spec.transformers_class)(config)
                total += sum(p.numel() for p in encoder.parameters())
                quantized += sum(layer.weight.numel() for _, layer in quantized_linears(encoder, spec.blocks))
            assert abs(quantized / total - model.memory.text_quantizable_share) < 0.01, (name, quantized / total)
            checked += 1
    assert checked >= 1


def test_the_estimate_counts_a_quantized_base_and_text_encoders_off_the_gpu():
    from trainer.memory_estimate import QUANTIZED_BYTES, estimate_memory

    def estimate(**model):
        config = config_from_dict({"mode": "lora", "model": {"architecture": "flux", **model},
                                   "dataset": {"resolution": 1024}, "training": {"gradient_checkpointing": True}})
        return estimate_memory(config, "cuda")

    facts = family("flux").memory
    transformer = facts.reference_parameters["transformer"]
    text = sum(n for key, n in facts.reference_parameters.items() if key.startswith("text_encoder"))
    full = estimate(text_encoder_device="gpu")
    for kind in KINDS:
        quantized = estimate(base_quantization=kind, text_encoder_device="gpu")
        saved = full.weights - quantized.weights
        assert saved == pytest.approx(transformer * facts.quantizable_share * (2 - QUANTIZED_BYTES[kind]), rel=1e-3)
    off = estimate(base_quantization="nf4", text_encoder_device="cpu")
    on = estimate(base_quantization="nf4", text_encoder_device="gpu")
    assert on.weights - off.weights == text * 2  # bf16 text encoders no longer on the GPU while training
    assert off.encoding == text * 2 and off.total >= off.encoding
    assert estimate(base_quantization="nf4").total == off.total  # auto on CUDA: cached captions, encoders leave
    swapped = estimate(base_quantization="nf4", blocks_to_swap=29)  # about half of Flux's 57 blocks
    assert off.weights - swapped.weights == pytest.approx(
        transformer * facts.quantizable_share * QUANTIZED_BYTES["nf4"] * 28 / 57, rel=0.05)
    # A Flux.1-dev LoRA at 1024 px with checkpointing: no longer fits 24 GB in bf16 with T5 resident, fits
    # 16 GB in nf4 with the encoders off the GPU.
    assert full.total > 24 * 1024**3 > 16 * 1024**3 > off.total


def test_every_preset_named_for_a_card_fits_it_by_the_estimate():
    import re

    from tests.conftest import PRESETS
    from trainer.config import load_config
    from trainer.memory_estimate import GB, estimate_memory

    sized = {}
    for path in sorted(PRESETS.glob("*.toml")):
        match = re.search(r"-(\d+)gb$", path.stem)
        if match:
            sized[path.stem] = estimate_memory(load_config(path), "cuda").total, int(match.group(1))
    assert {"flux-lora-24gb", "flux-lora-16gb", "flux-lora-12gb", "sd35-lora-24gb", "sd35-lora-16gb",
            "sd35-lora-12gb", "zimage-lora-24gb", "zimage-lora-16gb", "zimage-lora-12gb",
            "qwenimage-lora-24gb", "qwenimage-lora-16gb", "qwenimage-lora-12gb", "flux2klein-lora-24gb",
            "flux2klein-lora-16gb", "flux2klein-lora-12gb", "lumina2-lora-24gb",
            "lumina2-lora-16gb", "lumina2-lora-12gb", "chroma-lora-24gb",
            "chroma-lora-16gb", "chroma-lora-12gb", "flux2dev-lora-24gb", "flux2dev-lora-16gb",
            "ernieimage-lora-24gb", "ernieimage-lora-16gb", "ernieimage-lora-12gb", "kandinsky5-lora-24gb",
            "kandinsky5-lora-16gb", "kandinsky5-lora-12gb", "qwenimage21-lora-24gb", "qwenimage21-lora-16gb",
            "qwenimage21-lora-12gb", "krea2-lora-24gb", "krea2-lora-16gb", "krea2-lora-12gb", "ideogram4-lora-24gb",
            "ideogram4-lora-16gb", "ideogram4-lora-12gb", "hidream-lora-24gb", "hidream-lora-16gb",
            "hidream-lora-12gb", "qwenimageedit-lora-24gb", "qwenimageedit-lora-16gb",
            "qwenimageedit-lora-12gb", "flux2devedit-lora-24gb", "flux2devedit-lora-16gb"} <= set(sized)
    for name, (estimate, card) in sized.items():
        # The estimate, the CUDA context (~0.5 GB) and a 5 % margin for fragmentation fit the card.
        assert estimate + 0.5 * GB <= 0.95 * card * GB, (name, estimate / GB)


def test_swapped_blocks_come_to_the_device_only_while_they_run_in_forward_and_in_recomputation():
    """The swapper's schedule, seen through its copy function: a block's frozen layers are brought in right
    before it runs and sent back right after — in the forward pass and again when gradient checkpointing
    recomputes it during backward — and trainable weights (LoRA) never move."""
    import peft

    from trainer.models.offload import BlockSwapper, swappable_blocks

    model = flux_transformer()
    model.requires_grad_(False)
    model.add_adapter(peft.LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v"],
                                      init_lora_weights="gaussian"))
    model.enable_gradient_checkpointing()
    model.train()
    blocks = swappable_blocks(model, family("flux").blocks)
    assert len(blocks) == model.config.num_layers + model.config.num_single_layers

    where: dict[int, str] = {}
    events: list[tuple[int, str]] = []
    running: list[int] = []
    index_of = {id(leaf): i for i, block in enumerate(blocks) for leaf in block.modules()}

    def move(module, device):
        assert not any(p.requires_grad for p in module.parameters(recurse=False)), "a trained weight moved"
        where[id(module)] = str(device)
        events.append((index_of[id(module)], str(device)))
        if events_counted:
            resident = {index_of[id(leaf)] for leaf in leaves if where.get(id(leaf)) == "gpu"}
            most[0] = max(most[0], len(resident))

    events_counted, most, leaves = [], [0], []

    swapper = BlockSwapper(blocks, 2, onload="gpu", offload="host", move=move)
    for i, block in enumerate(blocks):  # a hook after the swapper's: sees where the block's layers are as it runs
        block.register_forward_pre_hook(lambda _m, _a, i=i: running.append(i))
    leaves += [leaf for block_leaves in swapper.leaves for leaf in block_leaves]
    assert leaves and all(where[id(leaf)] == "host" for leaf in leaves)  # they start off the device
    events.clear()
    events_counted.append(True)

    def check_running(_module, _args):
        i = running[-1]
        if i < 2:
            assert all(where[id(leaf)] == "gpu" for leaf in swapper.leaves[i]), f"block {i} ran off the device"
    for block in blocks:
        block.register_forward_pre_hook(check_running)

    model(**flux_inputs(model)).sample.pow(2).mean().backward()
    on_device = {i for i, block_leaves in enumerate(swapper.leaves)
                 if any(where[id(leaf)] == "gpu" for leaf in block_leaves)}
    assert len(on_device) <= 1, on_device  # at most the block recomputed last waits on the device
    assert most[0] == 1  # never two swapped blocks on the device at once, forward or backward
    brought = [i for i, device in events if device == "gpu"]
    # Each swapped block came in twice: its forward, and its recomputation in backward.
    assert sorted(set(brought)) == [0, 1] and running.count(0) == 2
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    swapper.remove()
    assert all(where[id(leaf)] == "gpu" for leaf in leaves)


@pytest.mark.slow
def test_a_run_with_swapped_blocks_trains_what_a_run_without_them_does(tmp_path, tiny_models, shapes_dataset):
    model = tiny_models["flux"]
    results = {}
    for swap in (0, 3):
        config = diffusion_config(model, shapes_dataset, "flux", training={
            "steps": 4, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 2, "seed": 1,
            "gradient_checkpointing": True}, model={"architecture": "flux", "path": str(model),
                                                    "blocks_to_swap": swap, "base_quantization": "int8"})
        code, rec = run_in_process(config, tmp_path / f"swap{swap}")
        assert code == EXIT_OK, rec.of(Failed)
        results[swap] = load_file(rec.of(Finished)[0].outputs[-1])
        log = RunFolder(tmp_path / f"swap{swap}").log_path.read_text(encoding="utf-8")
        assert ("Block swap: 3 of 3 blocks" in log) == bool(swap)
    assert all(torch.equal(results[0][key], results[3][key]) for key in results[0])


def test_each_familys_block_count_is_what_its_real_denoiser_has():
    import json

    import diffusers

    from trainer.families import FAMILIES
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.offload import swappable_blocks

    for name, model in FAMILIES.items():
        folder = model.config_folders.get(model.default_prediction) or next(iter(model.config_folders.values()), None)
        if folder is None or not (MODEL_CONFIGS / folder / model.denoiser / "config.json").is_file():
            continue
        config = json.loads((MODEL_CONFIGS / folder / model.denoiser / "config.json").read_text(encoding="utf-8"))
        with torch.device("meta"):
            denoiser = getattr(diffusers, config["_class_name"]).from_config(config)
        assert len(swappable_blocks(denoiser, model.blocks)) == model.memory.block_count, name


@pytest.mark.cuda
def test_on_a_gpu_each_memory_option_lowers_the_peak_and_the_lora_still_learns(tmp_path, tiny_models,
                                                                               shapes_dataset):
    """``make gpu-check`` runs this (pytest -m cuda): the same tiny Flux LoRA run with everything resident, then
    nf4 with the text encoders off the GPU, then that and two of three blocks swapped; each peak below the last."""
    import shutil

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    model = tmp_path / "tiny-flux-64"
    shutil.copytree(tiny_models["flux"], model)
    flux_transformer().save_pretrained(model / "transformer")
    peaks = []
    for options in ({"text_encoder_device": "gpu"}, {"base_quantization": "nf4"},
                    {"base_quantization": "nf4", "blocks_to_swap": 2}):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        config = diffusion_config(model, shapes_dataset, "flux", model={"architecture": "flux", "path": str(model),
                                                                        **options},
                                  training={"steps": 30, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 10,
                                            "seed": 1, "gradient_checkpointing": True})
        run = tmp_path / f"run{len(peaks)}"
        code, rec = run_in_process(config, run)
        assert code == EXIT_OK, rec.of(Failed)
        curve = [row["heldout_loss"] for row in RunFolder(run).read_metrics() if "heldout_loss" in row]
        assert curve[-1] < 0.95 * curve[0], (options, curve)
        peaks.append(torch.cuda.max_memory_allocated())
    assert peaks[0] > peaks[1] and peaks[0] > peaks[2], peaks


@pytest.mark.slow
def test_a_run_on_an_nf4_base_resumes_where_it_stopped(tmp_path, tiny_models, shapes_dataset):
    import shutil

    from tests.diffusion.conftest import straight_and_resumed

    model = tmp_path / "tiny-flux-64"
    shutil.copytree(tiny_models["flux"], model)
    flux_transformer().save_pretrained(model / "transformer")
    config = diffusion_config(model, shapes_dataset, "flux", model={"architecture": "flux", "path": str(model),
                                                                    "base_quantization": "nf4"},
                              training={"steps": 8, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 4,
                                        "seed": 1})
    _, _, (straight, resumed) = straight_and_resumed(config, tmp_path / "runs", stop_at=4)
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
