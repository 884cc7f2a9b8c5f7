"""Krea 2 through the registry, on a tiny model built from its real classes (``Krea2Transformer2DModel`` with
grouped-query attention and its text fusion, ``Qwen3VLModel`` 36 layers deep so the pipeline's own taps are read,
Qwen-Image's VAE, the shipped Qwen3 tokenizer): the engine's latents, prompts and prediction are the pipeline's; LoRA
learns and its diffusers file loads with ``Krea2Pipeline.load_lora_weights`` and gives the image the trained adapter
gave, and its kohya file names the original layers ComfyUI applies, module by module; a stopped and resumed run ends
where an uninterrupted one does; frozen-layer training moves only the chosen block and writes the original layout;
DreamBooth draws its class images through the pipeline; what Krea 2 cannot do is refused by name.  The single files
ComfyUI and musubi-tuner users keep load offline into the very model they came from (Turbo by its name), a Raw file
without a prefix beside a Qwen3-VL file without its vision tower too, and a file of another shape is refused naming
it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.diffusion.conftest import diffusion_config
from tests.families.harness import TrainedRun, assert_resume_equals_uninterrupted, lora_config, train
from tests.trainer.helpers import run_in_process
from trainer.errors import InputError
from trainer.models import load_model
from trainer.protocol import EXIT_OK, Failed, Finished, Sample


@pytest.fixture(scope="module")
def tiny_krea2(tiny_models) -> Path:
    return tiny_models["krea2"]


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.Krea2Pipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int, guidance: float = 4.5, steps: int = 3) -> np.ndarray:
    image = pipe(prompt, width=64, height=64, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_the_engine_reads_images_prompts_and_predictions_as_the_pipeline_does(tiny_krea2):
    """Latents normalised as the pipeline undoes before decoding; each prompt's real tokens (prompt and assistant
    suffix, the padding between them dropped) as ``encode_prompt`` gives them, padded again at the end in a batch;
    the prediction is the velocity the pipeline's sampler steps with — on the pipeline's own padded prompts."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for
    from trainer.diffusion.text import TextConditioning

    pipe = pipeline(tiny_krea2)
    # The shipped Qwen3 tokenizer counts the template as the pipeline expects Qwen3-VL's to: 34 system tokens dropped,
    # 5 suffix tokens after the padding, padded on the right.
    assert len(pipe.tokenizer(pipe.prompt_template_encode_prefix).input_ids) == pipe.prompt_template_encode_start_idx
    assert (len(pipe.tokenizer(pipe.prompt_template_encode_suffix).input_ids)
            == pipe.prompt_template_encode_num_suffix_tokens)
    assert pipe.tokenizer.padding_side == "right"
    parts = Components("krea2", "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        config = pipe.vae.config
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1)
        torch.testing.assert_close(latents * std + mean, pipe.vae.encode(pixels[:, :, None]).latent_dist.mean[:, :, 0])

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        hidden, mask = pipe.encode_prompt(list(prompts), device=torch.device("cpu"))
    assert hidden.shape[1:3] == (512, 12) and text.mask is not None  # 512 tokens of 12 stacked layers
    lengths = mask.sum(dim=1).tolist()
    assert [len(row) for row in text.sequences()] == lengths and lengths[0] < lengths[1]
    assert all(torch.equal(row, full[keep]) for row, full, keep in zip(text.sequences(), hidden, mask, strict=True))
    alone = [text.select(slice(i, i + 1)) for i in range(2)]  # a cache keeps each caption alone, unpadded
    assert alone[0].mask is None and alone[0].hidden.shape[1] == lengths[0]
    joined = TextConditioning.cat(alone)
    assert torch.equal(joined.hidden, text.hidden) and torch.equal(joined.mask, text.mask)

    noisy = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        # As the pipeline's loop: packed latents, its 512-token prompts and mask, time t / 1000.
        packed = pipe._pack_latents(noisy, 2, 4, 8, 8)
        ids = pipe.prepare_position_ids(hidden.shape[1], 4, 4, torch.device("cpu"))
        out = pipe.transformer(hidden_states=packed, encoder_hidden_states=hidden, timestep=sigma * 1000 / 1000,
                               position_ids=ids, encoder_attention_mask=mask, return_dict=False)[0]
    torch.testing.assert_close(predicted, pipe._unpack_latents(out, 64, 64)[:, :, 0], rtol=1e-4, atol=1e-5)


def test_the_norms_diffusers_keeps_in_float32_stay_so_when_the_base_is_moved_to_bf16(tiny_krea2):
    """``Krea2Transformer2DModel`` keeps its zero-centred RMS norm scales in float32 (1 + w in bf16 keeps 3 digits):
    moving the frozen base to bf16 (``quantize_denoiser``, with or without quantization) keeps them so, as
    ``from_pretrained`` does."""
    import diffusers

    from trainer.models.quantize import quantize_denoiser

    transformer = diffusers.Krea2Transformer2DModel.from_pretrained(tiny_krea2 / "transformer", local_files_only=True)
    quantize_denoiser(transformer, ("transformer_blocks",), "none", "cpu", torch.bfloat16)
    dtypes = {name: p.dtype for name, p in transformer.named_parameters()}
    assert dtypes["transformer_blocks.0.norm1.weight"] == dtypes["final_layer.norm.weight"] == torch.float32
    assert dtypes["text_fusion.refiner_blocks.0.attn.norm_q.weight"] == torch.float32
    assert dtypes["transformer_blocks.0.attn.to_q.weight"] == dtypes["img_in.weight"] == torch.bfloat16


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_krea2, varied_captions) -> TrainedRun:
    """The LoRA run the tests below read: captions of different lengths in one batch (padded, masked), their
    Qwen3-VL embeddings cached on disk each at its own length; guided previews, the empty prompt as the negative."""
    config = lora_config(tiny_krea2, varied_captions, "krea2", sampling={"guidance_scale": 4.5},
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("krea2-lora") / "run")


@pytest.mark.slow
def test_krea2_lora_learns_and_its_file_reproduces_the_trained_adapter(lora_run, tiny_krea2):
    """The diffusers file through ``Krea2Pipeline.load_lora_weights`` draws the trained image (guided, the empty
    prompt as the negative, as the previews draw it); the kohya file's layers are the original ones ComfyUI names and
    diffusers' own Krea 2 converter places back on the trained modules."""
    curve = lora_run.heldout_curve()
    # Measured (seed 1, 30 steps, captions of three lengths): 1.46 → 1.23 (0.84×).
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    kohya_file, lora_file = lora_run.outputs
    assert lora_file.name == "pytorch_lora_weights.safetensors" and kohya_file.name == "tiny.safetensors"
    reference = load_file(lora_file)
    assert {key.split(".")[0] for key in reference} == {"transformer"}
    trained_modules = {key.rsplit(".lora_", 1)[0].removeprefix("transformer.") for key in reference}
    assert {"transformer_blocks.0.attn.to_q", "transformer_blocks.1.attn.to_out.0"} <= trained_modules

    final = lora_run.final_sample
    assert final.step == 30
    trained = lora_run.final_image()
    pipe = pipeline(tiny_krea2)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    loaded = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(loaded - trained).max() <= 2
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture

    # The kohya file (musubi-tuner's names), module by module as ComfyUI applies it: each lora_unet_ name is an
    # original-layout weight of the model with "." → "_", and its delta is the trained module's.
    from trainer.families.krea2 import original_layout
    from trainer.models.krea2_layout import to_original

    kohya = load_file(kohya_file)
    with safe_open(kohya_file, "pt") as handle:
        assert handle.metadata()["ss_network_module"] == "networks.lora_krea2"
    pipe.unload_lora_weights()  # the base model again, its own module names: no second load of the pipeline
    transformer = pipe.transformer
    comfy_names = {"lora_unet_" + key.removesuffix(".weight").replace(".", "_"): key
                   for key in to_original(transformer.state_dict(), dict(transformer.config))}
    modules = {key.split(".")[0] for key in kohya}
    assert {"lora_unet_blocks_0_attn_wq", "lora_unet_txtfusion_refiner_blocks_0_attn_wo"} <= modules
    assert modules <= comfy_names.keys()
    layout = original_layout(dict(transformer.config))
    for module in trained_modules:
        name = "lora_unet_" + layout[module][0].replace(".", "_")
        down, up = kohya[f"{name}.lora_down.weight"], kohya[f"{name}.lora_up.weight"]
        torch.testing.assert_close(float(kohya[f"{name}.alpha"]) / down.shape[0] * (up @ down),
                                   reference[f"transformer.{module}.lora_B.weight"]
                                   @ reference[f"transformer.{module}.lora_A.weight"])
    # The same layers under the reference trainer's names (diffusion_model.<original layer>, which ComfyUI maps too):
    # diffusers' own Krea 2 converter puts each back on its module, and the pipeline draws the trained image.
    renamed = {}
    for name in modules:
        layer = "diffusion_model." + comfy_names[name].removesuffix(".weight")
        scale = float(kohya[f"{name}.alpha"]) / kohya[f"{name}.lora_down.weight"].shape[0]
        renamed[f"{layer}.lora_A.weight"] = kohya[f"{name}.lora_down.weight"]
        renamed[f"{layer}.lora_B.weight"] = kohya[f"{name}.lora_up.weight"] * scale
    pipe.load_lora_weights(renamed)
    assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() <= 2


def test_the_original_layout_is_the_one_diffusers_and_comfyui_read_at_the_real_shape():
    """The shipped real-size folder counts the registry's parameters (transformer 12.8 B, Qwen3-VL-4B with its
    vision tower, Qwen-Image's VAE).  At that shape (28 blocks 6144 wide, keys and values 1536 rows, 2 + 2 text
    fusion blocks 2560 wide), the weights written in the original layout by ``krea2_layout.to_original`` (a frozen
    run's single file, the kohya LoRA's layer names) are read back by diffusers' own
    ``convert_krea2_transformer_checkpoint_to_diffusers`` into every key, shape and value (thin tensors of the true
    heights keep it small), and hold every weight ComfyUI's ``SingleStreamDiT`` has, by its names."""
    import diffusers
    import transformers
    from diffusers.loaders.single_file_utils import convert_krea2_transformer_checkpoint_to_diffusers

    from trainer.families import family
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.krea2_layout import to_diffusers, to_original

    folder = MODEL_CONFIGS / family("krea2").config_folders["flow_matching"]
    with torch.device("meta"):
        real = diffusers.Krea2Transformer2DModel.from_config(
            diffusers.Krea2Transformer2DModel.load_config(folder / "transformer"))
        encoder = transformers.Qwen3VLModel(transformers.Qwen3VLConfig.from_pretrained(folder / "text_encoder"))
        vae = diffusers.AutoencoderKLQwenImage.from_config(diffusers.AutoencoderKLQwenImage.load_config(folder / "vae"))
    counts = {name: sum(p.numel() for p in module.parameters())
              for name, module in (("transformer", real), ("text_encoder", encoder), ("vae", vae))}
    assert counts == family("krea2").memory.reference_parameters
    generator = torch.Generator().manual_seed(0)
    thin = {key: torch.randn(value.shape if value.numel() <= 100_000  # the modulation tables whole: they reshape
                             else (*value.shape[:1], *([1] if value.dim() > 1 else [])), generator=generator)
            for key, value in real.state_dict().items()}
    original = to_original(thin, dict(real.config))
    assert original["blocks.27.mod.lin"].shape == (6 * 6144,) and original["blocks.0.attn.wk.weight"].shape[0] == 1536
    # ComfyUI's SingleStreamDiT (comfy/ldm/krea2/model.py), by its module names.
    assert {"first.weight", "tmlp.0.weight", "tproj.1.weight", "txtmlp.0.scale", "txtmlp.3.weight",
            "txtfusion.projector.weight", "txtfusion.refiner_blocks.1.attn.qknorm.knorm.scale",
            "blocks.27.attn.gate.weight", "blocks.27.mlp.down.weight", "last.modulation.lin",
            "last.linear.bias"} <= original.keys()
    converted = convert_krea2_transformer_checkpoint_to_diffusers(
        {f"model.diffusion_model.{key}": value for key, value in original.items()})
    assert converted.keys() == thin.keys()
    assert all(torch.equal(converted[key], thin[key]) for key in thin)
    back = to_diffusers(original, dict(real.config))
    assert back.keys() == thin.keys() and all(torch.equal(back[key], thin[key]) for key in thin)


@pytest.mark.slow
def test_krea2_resume_equals_uninterrupted(tmp_path, lora_run):
    """Captions of different lengths in one batch (padded, masked), their Qwen3-VL embeddings cached on disk each at
    its own length: resumed from a checkpoint, the run reads them back and ends where the uninterrupted one did."""
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")


@pytest.mark.slow
def test_krea2_frozen_layers_move_only_the_chosen_block(tmp_path, tiny_krea2, shapes_dataset):
    """Only the named block moves, and the diffusers folder written draws the run's final sample."""
    config = diffusion_config(tiny_krea2, shapes_dataset, "krea2", mode="frozen",
                              frozen={"trainable": ["transformer_blocks.1"]},
                              training={"steps": 4, "learning_rate": 1e-3, "eval_every": 2},
                              sampling={"inference_steps": 2, "guidance_scale": 0.0})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    from diffusers.loaders.single_file_utils import convert_krea2_transformer_checkpoint_to_diffusers

    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_krea2 / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("transformer_blocks.1.") for name in moved)
    # RUN_NAME.safetensors: the same transformer in the original layout, as diffusers' own converter reads it.
    original = load_file(single)
    assert single.name == "tiny.safetensors" and "blocks.1.attn.wq.weight" in original
    back = convert_krea2_transformer_checkpoint_to_diffusers(dict(original))
    assert back.keys() == after.keys() and all(torch.equal(back[k], after[k]) for k in after)
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(draw(pipeline(folder), final.prompts[0], final.seeds[0], 0.0, 2) - trained).max() <= 2


@pytest.mark.slow
def test_krea2_dreambooth_draws_its_class_images_through_krea2pipeline_and_uses_the_prior(
        tmp_path, tiny_krea2, shapes_dataset, monkeypatch):
    """DreamBooth with prior preservation: the missing class image is the base model's own picture of the class
    prompt (``Krea2Pipeline``, the seed the generator names), and every step adds the class term."""
    from tests.diffusion.conftest import draw_shapes
    from trainer.jobs.diffusion import DiffusionJob

    class_dir = draw_shapes(tmp_path / "class", 2, with_captions=False)
    seen: list[bool] = []
    original = DiffusionJob._batch_loss

    def spy(self, examples, is_class, indices):
        seen.append(is_class)
        return original(self, examples, is_class, indices)

    monkeypatch.setattr(DiffusionJob, "_batch_loss", spy)
    config = diffusion_config(tiny_krea2, shapes_dataset, "krea2", mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 3,
                                          "prior_loss_weight": 1.0},
                              training={"steps": 2, "eval_every": 2},
                              sampling={"inference_steps": 2, "guidance_scale": 4.5})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert seen.count(True) == 2 and seen.count(False) == 2
    generated = np.asarray(Image.open(class_dir / "class-00000.png").convert("RGB"), dtype=np.int16)
    expected = pipeline(tiny_krea2)("a circle", width=64, height=64, num_inference_steps=2, guidance_scale=4.5,
                                    generator=torch.Generator("cpu").manual_seed(1 * 100_003)).images[0]
    assert np.abs(np.asarray(expected, dtype=np.int16) - generated).max() <= 2


def test_what_krea2_cannot_do_is_refused_by_name(tmp_path, tiny_krea2):
    """Its Qwen3-VL encoder takes no LoRA (no loader applies one); fusing reaches the LoRA's checks; an original-layout
    transformer file without its companions is read as Krea 2's (``txtfusion.``) and the missing file named."""
    from trainer.config import ConfigError, config_from_dict
    from trainer.merge.fuse import fuse_lora
    from trainer.models import inspect_model

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Krea 2's Qwen3-VL text encoder takes no LoRA"):
        config_from_dict({"mode": "lora", "model": {"architecture": "krea2"}, "lora": {"train_text_encoder": True}})
    # Merges of this family are available (tests/merge/test_family_models_*): fusing gets as far as the LoRA.
    with pytest.raises(InputError, match=r"LoRA: .*missing\.safetensors does not exist"):
        fuse_lora(tiny_krea2, [(tmp_path / "missing.safetensors", 1.0)], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    single = tmp_path / "raw.safetensors"
    save_file({"txtfusion.projector.weight": torch.zeros(1, 12), "first.weight": torch.zeros(4, 4)}, single)
    assert inspect_model(single).architecture == "krea2"
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .*raw\.safetensors holds the Krea 2 transformer "
                                         r"only; choose its Qwen3-VL text encoder file \(qwen3vl_4b_bf16"):
        load_model(single)


COMPONENTS = ("transformer", "text_encoder", "vae")


def comfy_text_encoder(pipe) -> dict[str, torch.Tensor]:
    """The tiny Qwen3-VL as ComfyUI's file holds it: the language model under ``model.``, the tower under
    ``visual.``, with the tied LM head written out."""
    state = {key.replace("language_model.", "model.", 1): value.contiguous()
             for key, value in pipe.text_encoder.state_dict().items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    return state


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_krea2):
    """The tiny Krea 2 as ComfyUI keeps it — ``turbo.safetensors`` (krea-ai's original layout, ComfyUI's prefix) in
    models/diffusion_models, ``qwen3vl_4b_bf16.safetensors`` (ComfyUI's ``model.``/``visual.`` keys) in
    models/text_encoders, ``qwen_image_vae.safetensors`` (Wan 2.1's layout) in models/vae — with Z-Image's Qwen3 file
    beside its text encoder (not to be taken for it); the pipeline it came from; its config folder."""
    from trainer.models import wan_vae_layout
    from trainer.models.krea2_layout import pipeline_to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-krea2")
    model = tiny_krea2
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / "turbo.safetensors")
    save_file(comfy_text_encoder(pipe), models / "text_encoders" / "qwen3vl_4b_bf16.safetensors")
    save_file({"model.embed_tokens.weight": torch.zeros(8, 4)}, models / "text_encoders" / "qwen_3_4b.safetensors")
    vae = wan_vae_layout.to_original(pipe.vae.state_dict(), pipe.vae.config.num_res_blocks)
    save_file({k: v.contiguous() for k, v in vae.items()}, models / "vae" / "qwen_image_vae.safetensors")
    return {"pipe": pipe, "models": models, "config_dir": write_tiny_config_dir(model, root / "config")}


def same_weights(a, b, names=COMPONENTS) -> None:
    for name in names:
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        assert all(torch.equal(left[k], right[k]) for k in left), name


def comfy_picture(pipe, guidance: float = 4.5) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe("a red circle", guidance_scale=guidance, width=64, height=64, num_inference_steps=2,
                           generator=torch.Generator().manual_seed(3)).images[0])


def test_the_single_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy):
    file = comfy["models"] / "diffusion_models" / "turbo.safetensors"
    loaded = load_model(file, config_dir=comfy["config_dir"], expected_architecture="krea2")
    assert (loaded.info.architecture, loaded.info.prediction_type, loaded.info.source_kind) == (
        "krea2", "flow_matching", "single_file")
    same_weights(comfy["pipe"], loaded.pipeline)
    assert loaded.pipeline.config.is_distilled and not comfy["pipe"].config.is_distilled  # Turbo, by its name
    assert loaded.pipeline.text_encoder_select_layers == comfy["pipe"].text_encoder_select_layers
    loaded.pipeline.register_to_config(is_distilled=False)  # drawn with the same schedule: the same picture
    assert np.array_equal(comfy_picture(loaded.pipeline), comfy_picture(comfy["pipe"]))


def test_a_raw_file_without_prefix_and_an_encoder_without_its_vision_tower_load(comfy, tmp_path):
    """krea-ai's ``raw.safetensors`` keys have no prefix; a Qwen3-VL file with the language model alone encodes
    prompts exactly as the whole one (the pipeline never reads the tower)."""
    import shutil

    from trainer.models.krea2_layout import pipeline_to_original

    pipe = comfy["pipe"]
    models = tmp_path / "models"
    shutil.copytree(comfy["models"] / "vae", models / "vae")
    (models / "diffusion_models").mkdir(parents=True)
    (models / "text_encoders").mkdir()
    save_file({k: v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / "raw.safetensors")
    text_only = {k: v for k, v in comfy_text_encoder(pipe).items() if not k.startswith("visual.")}
    save_file(text_only, models / "text_encoders" / "qwen3vl_4b_bf16.safetensors")
    loaded = load_model(models / "diffusion_models" / "raw.safetensors", config_dir=comfy["config_dir"]).pipeline
    assert not loaded.config.is_distilled
    same_weights(pipe, loaded, ("transformer", "vae"))
    with torch.no_grad():
        prompts = ["a red circle", "a small blue square on a green field"]
        ours, our_mask = loaded.encode_prompt(prompts, device=torch.device("cpu"))
        theirs, their_mask = pipe.encode_prompt(prompts, device=torch.device("cpu"))
    assert torch.equal(ours, theirs) and torch.equal(our_mask, their_mask)


def test_a_transformer_file_of_another_shape_is_refused_naming_it(comfy, tmp_path):
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    file = models / "diffusion_models" / "krea2_other.safetensors"
    save_file({"txtfusion.projector.weight": torch.zeros(1, 12), "blocks.0.attn.wx.weight": torch.zeros(2, 2)}, file)
    with pytest.raises(InputError, match=r"model\.path: .*krea2_other\.safetensors does not hold a Krea 2 transformer "
                                         r"of this shape: it has unknown blocks\.0\.attn\.wx\.weight"):
        load_model(file, config_dir=comfy["config_dir"],
                   text_encoder_files=[str(comfy["models"] / "text_encoders" / "qwen3vl_4b_bf16.safetensors")],
                   vae_file=str(comfy["models"] / "vae" / "qwen_image_vae.safetensors"))
