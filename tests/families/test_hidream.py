"""HiDream-I1 through the registry, on a tiny model built from its real classes (``HiDreamImageTransformer2DModel``
with its mixture-of-experts feed-forwards, two CLIPs with projections, T5, a Llama causal LM, Flux's VAE shape): the
engine's latents, prompts and prediction are the pipeline's (and the MoE's training path predicts what its inference
path does); LoRA learns, its diffusers file loads with ``HiDreamImagePipeline.load_lora_weights`` and, applied as
ComfyUI applies it, gives the image the trained adapter gave; a stopped and resumed run ends where an uninterrupted
one does; frozen-layer training moves only the chosen block; DreamBooth draws its class images with the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config
from tests.families.harness import TrainedRun, assert_resume_equals_uninterrupted, lora_config, train
from tests.trainer.helpers import run_in_process
from trainer.families.hidream import LORA_TARGETS
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder

LORA = {"rank": 4, "alpha": 8.0}  # the family's default targets (both streams' attention)


@pytest.fixture(scope="module")
def tiny_hidream(tiny_models) -> Path:
    return tiny_models["hidream"]


def pipeline(model_dir: Path):
    import diffusers

    from trainer.diffusion.sampling import prepared

    pipe = diffusers.HiDreamImagePipeline.from_pretrained(model_dir, local_files_only=True)
    return prepared(pipe, "hidream")  # as Kamaal's previews: at the tiny transformer's 64 px, not 1024


def draw(pipe, prompt: str, seed: int, guidance: float = 7.5) -> np.ndarray:
    image = pipe(prompt, width=64, height=64, num_inference_steps=3, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    assert image.size == (64, 64)
    return np.asarray(image, dtype=np.int16)


def test_the_engine_reads_images_prompts_and_predictions_as_the_pipeline_does(tiny_hidream):
    """Latents shifted and scaled as the pipeline undoes before decoding; T5's and every Llama layer's hidden states
    and the CLIPs' pooled projections as ``encode_prompt`` gives them (kept side by side in one tensor); the
    prediction is the velocity the pipeline steps with (the output negated, time σ·1000), from the MoE's training
    path as from its inference path, for square and non-square latents."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for

    pipe = pipeline(tiny_hidream)
    encoders = [pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3, pipe.text_encoder_4]
    parts = Components("hidream", "flow_matching", [pipe.tokenizer, pipe.tokenizer_2, pipe.tokenizer_3,
                                                    pipe.tokenizer_4], encoders, pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        config = pipe.vae.config
        torch.testing.assert_close(latents / config.scaling_factor + config.shift_factor,
                                   pipe.vae.encode(pixels).latent_dist.mean)

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts(encoders, prompts, "cpu")
        t5, _, llama, _, pooled, _ = pipe.encode_prompt(list(prompts), do_classifier_free_guidance=False,
                                                        device=torch.device("cpu"))
    assert t5.shape[1] == 128 and llama.shape[:3] == (3, 2, 128)  # every Llama layer, 128 tokens each
    assert torch.equal(text.pooled, pooled) and text.hidden.shape == (2, 128, 32 + 3 * 32)

    noisy = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.25, 0.8])
    transformer = pipe.transformer
    with torch.no_grad():
        predicted = engine.predict(transformer, noisy, sigma, text)
        # As the pipeline's loop: t = σ·1000 from its scheduler, the output negated.
        out = transformer(hidden_states=noisy, timesteps=sigma * 1000, encoder_hidden_states_t5=t5,
                          encoder_hidden_states_llama3=llama, pooled_embeds=pooled, return_dict=False)[0]
        torch.testing.assert_close(predicted, -out, rtol=1e-4, atol=1e-5)
        wide = torch.randn(2, 4, 4, 8, generator=torch.Generator().manual_seed(2))  # padded to max_seq tokens
        inference = engine.predict(transformer, wide, sigma, text)
        transformer.train()  # the MoE's training path; its output comes back patch by patch
        torch.testing.assert_close(engine.predict(transformer, noisy, sigma, text), predicted, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(engine.predict(transformer, wide, sigma, text), inference, rtol=1e-4, atol=1e-5)
    transformer.eval()


def comfy_applied(model_dir: Path, lora_file: Path) -> dict[str, torch.Tensor]:
    """The transformer's weights with the LoRA file applied as ComfyUI's HiDream branch of ``model_lora_keys_unet``
    does: ``transformer.K`` is the weight ``diffusion_model.K.weight`` of its model, whose keys are diffusers' (the
    single-file converter only strips that prefix); the delta is lora_B @ lora_A (no alpha: the scale is in B)."""
    weights = load_file(model_dir / "transformer" / "diffusion_pytorch_model.safetensors")
    tensors = load_file(lora_file)
    modules = {key.removesuffix(".lora_A.weight") for key in tensors if key.endswith(".lora_A.weight")}
    for module in modules:
        key = module.removeprefix("transformer.") + ".weight"
        assert key in weights, key
        delta = tensors[f"{module}.lora_B.weight"].float() @ tensors[f"{module}.lora_A.weight"].float()
        weights[key] = (weights[key].float() + delta).to(weights[key].dtype)
    return weights


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_hidream, shapes_dataset) -> TrainedRun:
    """The LoRA run the tests below read: the captions' T5 and Llama states cached on disk."""
    config = lora_config(tiny_hidream, shapes_dataset, "hidream", lora=LORA,
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_hidream_lora_learns_and_its_file_reproduces_the_trained_adapter_in_diffusers_and_as_comfyui_applies_it(
        lora_run, tiny_hidream):
    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    outputs = [Path(p) for p in rec.of(Finished)[0].outputs]
    assert [p.name for p in outputs] == ["pytorch_lora_weights.safetensors"]  # ComfyUI reads this file too
    lora_file = outputs[0]
    keys = set(load_file(lora_file))
    modules = {key.rsplit(".lora_", 1)[0] for key in keys}
    assert {"transformer.double_stream_blocks.0.block.attn1.to_q", "transformer.double_stream_blocks.0.block.attn1."
            "to_out_t", "transformer.single_stream_blocks.1.block.attn1.to_v"} <= modules
    assert all(key.startswith("transformer.") for key in keys)

    final = rec.of(Sample)[-1]
    assert final.step == 30
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_hidream)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture
    pipe.transformer.load_state_dict(comfy_applied(tiny_hidream, lora_file))
    assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() <= 2
    pipe = pipeline(tiny_hidream)
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() <= 2


@pytest.mark.slow
def test_hidream_resume_with_captions_cached_on_disk_equals_uninterrupted(tmp_path, lora_run, shapes_dataset):
    """The captions' T5 and Llama states go to the run's text cache once each (the encoders can then leave the GPU);
    a run resumed from a checkpoint reads them and ends with the weights of the uninterrupted one."""
    resumed = assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")
    captions = {p.read_text(encoding="utf-8") for p in shapes_dataset.glob("*.txt")}
    cached = list((resumed.root / "cache" / "text").glob("*.safetensors"))
    assert len(cached) == len(captions)
    assert {tuple(load_file(f)["hidden"].shape) for f in cached} == {(1, 128, 32 + 3 * 32)}  # T5, then 3 layers


@pytest.mark.slow
def test_hidream_frozen_layers_move_only_the_chosen_block(tmp_path, tiny_hidream, shapes_dataset):
    """Frozen-layer training of one single-stream block (its routed experts too: the MoE's training path carries
    their gradients) moves that block only; the diffusers folder it writes draws the run's final sample."""
    block = "single_stream_blocks.1"
    config = diffusion_config(tiny_hidream, shapes_dataset, "hidream", mode="frozen", frozen={"trainable": [block]},
                              training={"steps": 6, "learning_rate": 1e-3, "eval_every": 3})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_hidream / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith(f"{block}.") for name in moved)
    assert any(".ff_i.experts." in name for name in moved)
    written = load_file(single)  # the transformer for ComfyUI's Load Diffusion Model: diffusers' keys
    assert written.keys() == after.keys() and all(torch.equal(written[k], after[k]) for k in after)
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(draw(pipeline(folder), final.prompts[0], final.seeds[0]) - trained).max() <= 2


@pytest.mark.slow
def test_hidream_dreambooth_draws_its_class_images_and_trains(tmp_path, tiny_hidream, shapes_dataset):
    class_dir = tmp_path / "class"
    config = diffusion_config(tiny_hidream, shapes_dataset, "hidream", mode="dreambooth", lora=LORA,
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 2},
                              training={"steps": 2, "eval_every": 2}, sampling={"inference_steps": 1})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    drawn = sorted(class_dir.glob("class-*.png"))
    assert len(drawn) == 2 and all(Image.open(p).size == (64, 64) for p in drawn)
    assert Path(rec.of(Finished)[0].outputs[-1]).is_file()


def test_a_hidream_config_without_lora_targets_adapts_both_streams_attention():
    """The config's default targets name ``to_out.0``, which HiDream's attention lacks: a HiDream config that names
    none gets the family's (both streams' q/k/v/out); one that names its own keeps them."""
    from trainer.config import config_from_dict

    config = config_from_dict({"mode": "lora", "model": {"architecture": "hidream"}})
    assert config.lora.target_modules == list(LORA_TARGETS)
    named = config_from_dict({"mode": "lora", "model": {"architecture": "hidream"},
                              "lora": {"target_modules": ["to_q"]}})
    assert named.lora.target_modules == ["to_q"]
    assert config_from_dict({"mode": "lora", "model": {"architecture": "flux"}}).lora.target_modules[-1] == "to_out.0"


def test_hidream_text_encoders_take_no_lora():
    """No loader applies a LoRA to HiDream's text encoders (diffusers' HiDream loader takes the transformer's only):
    the config refuses ``lora.train_text_encoder`` naming them."""
    from trainer.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="text encoder"):
        config_from_dict({"mode": "lora", "model": {"architecture": "hidream"},
                          "lora": {"train_text_encoder": True}})


def test_a_hidream_folder_without_its_llama_and_merges_are_refused_by_name(tmp_path, tiny_hidream):
    """The released HiDream folders leave Llama 3.1 out (its tokenizer is not Kamaal's to ship): a folder without
    ``text_encoder_4``/``tokenizer_4`` is refused naming them, by convert-model too (nothing written)."""
    import shutil

    from trainer.errors import InputError
    from trainer.models import load_model

    folder = tmp_path / "HiDream-I1-Full"
    shutil.copytree(tiny_hidream, folder, ignore=shutil.ignore_patterns("text_encoder_4", "tokenizer_4"))
    with pytest.raises(InputError, match=r"holds no Llama-3\.1-8B-Instruct text encoder \(text_encoder_4/ and "
                                         r"tokenizer_4/\); HiDream-I1 needs it"):
        load_model(folder)
    from trainer.merge.convert import convert_model

    with pytest.raises(InputError, match=r"holds no Llama-3\.1-8B-Instruct text encoder"):
        convert_model(folder, tmp_path / "hidream.safetensors")
    assert not (tmp_path / "hidream.safetensors").exists()


def test_on_an_nf4_base_the_moe_training_path_carries_the_lora_gradients_and_predicts_what_inference_does():
    """With the blocks' Linear layers in nf4 (bitsandbytes, as the presets train it; widths of 64 so that they are
    quantized), the MoE's training path — tokens gathered per expert — runs through the 4-bit layers, the LoRA on
    every stream's attention gets a gradient, and it predicts what the inference path does."""
    import diffusers
    from peft import LoraConfig

    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for
    from trainer.diffusion.text import TextConditioning
    from trainer.families import family
    from trainer.models.quantize import quantize_denoiser

    model = family("hidream")
    config = model.tiny["denoiser"][1] | {"attention_head_dim": 32, "caption_channels": (64, 64)}
    torch.manual_seed(0)
    transformer = diffusers.HiDreamImageTransformer2DModel(**config)
    assert quantize_denoiser(transformer, model.blocks, "nf4", "cpu", torch.float32) > 0
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(model.lora_target_modules)))
    engine = engine_for(Components("hidream", "flow_matching", [], [], None, transformer, None))
    generator = torch.Generator().manual_seed(0)
    text = TextConditioning(torch.randn(2, 16, 64 + 3 * 64, generator=generator),
                            torch.randn(2, 64, generator=generator))
    noisy, sigma = torch.randn(2, 4, 8, 8, generator=generator), torch.tensor([0.3, 0.6])
    transformer.train()
    trained = engine.predict(transformer, noisy, sigma, text)
    trained.square().mean().backward()
    # lora_B starts at zero, so it is the up matrices that a first backward pass moves: every one of them.
    ups = {name: p.grad for name, p in transformer.named_parameters() if "lora_B" in name}
    assert len(ups) == 8 + 2 * 4  # one double block (both streams), two single blocks (one)
    assert all(grad is not None and bool(grad.abs().sum() > 0) for grad in ups.values()), ups.keys()
    assert any(".ff_i.experts." in name for name, module in transformer.named_modules()
               if type(module).__name__ == "Linear4bit")
    transformer.eval()
    with torch.no_grad():
        torch.testing.assert_close(engine.predict(transformer, noisy, sigma, text), trained.detach())


def comfy_files(model_dir: Path, root: Path, llama_tokenizer: bool) -> Path:
    """The tiny model as a ComfyUI user keeps HiDream: ``models/diffusion_models/hidream_i1_full_fp16`` (ComfyUI's
    prefix), the four encoder files in ``models/text_encoders`` (the Llama one without its LM head, T5 in "scaled"
    fp8 as ``t5xxl_fp8_e4m3fn_scaled`` is), Flux's ``ae`` in ``models/vae``; the installation's own Llama tokenizer
    in ``comfy/text_encoders/llama_tokenizer`` when asked."""
    import shutil

    from safetensors.torch import save_file

    from trainer.models.original_layout import vae_to_original

    models = root / "ComfyUI" / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    transformer = load_file(model_dir / "transformer" / "diffusion_pytorch_model.safetensors")
    single = models / "diffusion_models" / "hidream_i1_full_fp16.safetensors"
    save_file({f"model.diffusion_model.{key}": value for key, value in transformer.items()}, single)
    for component, name in (("text_encoder", "clip_l_hidream"), ("text_encoder_2", "clip_g_hidream")):
        save_file(load_file(model_dir / component / "model.safetensors"),
                  models / "text_encoders" / f"{name}.safetensors")
    t5 = load_file(model_dir / "text_encoder_3" / "model.safetensors")
    scaled = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, value in t5.items():
        if key.endswith(".weight") and value.dim() == 2 and "embed" not in key and "shared" not in key:
            scale = value.abs().max().float() / 448
            scaled[key] = (value.float() / scale).to(torch.float8_e4m3fn)
            scaled[key.removesuffix(".weight") + ".scale_weight"] = scale.reshape(1)
        else:
            scaled[key] = value
    save_file(scaled, models / "text_encoders" / "t5xxl_fp8_e4m3fn_scaled.safetensors")
    llama = {key: value for key, value in load_file(model_dir / "text_encoder_4" / "model.safetensors").items()
             if not key.startswith("lm_head.")}
    save_file(llama, models / "text_encoders" / "llama_3.1_8b_instruct_fp16.safetensors")
    vae = load_file(model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    save_file(vae_to_original(vae, 4), models / "vae" / "ae.safetensors")
    if llama_tokenizer:
        shutil.copytree(model_dir / "tokenizer_4", root / "ComfyUI" / "comfy" / "text_encoders" / "llama_tokenizer")
    return single


def test_comfyuis_hidream_files_load_offline_and_draw_what_the_diffusers_folder_draws(tmp_path, tiny_hidream,
                                                                                      monkeypatch):
    """ComfyUI's files — the transformer under its prefix, the two CLIPs, T5 in scaled fp8, the Llama file without
    its LM head, Flux's ae — load with the network blocked, the Llama tokenizer taken from the ComfyUI installation
    the file sits in, and draw the diffusers folder's image (T5's fp8 rounding aside: within a few levels).  Without
    that tokenizer the file is refused naming the folder; a folder named in ``model.tokenizer_folder`` serves too."""
    import shutil
    import socket

    from trainer.diffusion.sampling import prepared
    from trainer.errors import InputError
    from trainer.models import load_model
    from trainer.models.tiny import write_tiny_config_dir

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    config_dir = tmp_path / "config"
    write_tiny_config_dir(tiny_hidream, config_dir)
    shutil.rmtree(config_dir / "tokenizer_4")  # as the shipped folder: no Llama tokenizer of its own
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    without = comfy_files(tiny_hidream, tmp_path / "bare", llama_tokenizer=False)
    with pytest.raises(InputError, match=r"needs Llama 3\.1's tokenizer.*comfy/text_encoders/llama_tokenizer"):
        load_model(without, config_dir=config_dir)
    named = load_model(without, config_dir=config_dir, tokenizer_folder=str(tiny_hidream / "tokenizer_4")).pipeline
    assert named.tokenizer_4("a red circle").input_ids == pipeline(tiny_hidream).tokenizer_4("a red circle").input_ids

    single = comfy_files(tiny_hidream, tmp_path / "user", llama_tokenizer=True)
    loaded = load_model(single, config_dir=config_dir).pipeline
    reference = pipeline(tiny_hidream)
    for name in ("transformer", "text_encoder", "text_encoder_2", "text_encoder_4", "vae"):
        mine, theirs = getattr(loaded, name).state_dict(), getattr(reference, name).state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), name
    t5, fp8 = loaded.text_encoder_3.state_dict(), load_file(single.parent.parent / "text_encoders" /
                                                           "t5xxl_fp8_e4m3fn_scaled.safetensors")
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"  # as ComfyUI computes with it: fp8 × its scale
    assert torch.equal(t5[key], fp8[key].float() * fp8[key.removesuffix("weight") + "scale_weight"])
    assert not loaded.text_encoder_3.training and not loaded.text_encoder_4.training
    assert loaded.scheduler.config.shift == 3.0  # Full's (a …_dev_… file samples with Dev's 6)
    # The same parts draw the same picture: tokenizers (Llama's from the ComfyUI installation) included.
    loaded.text_encoder_3 = reference.text_encoder_3
    assert np.abs(draw(prepared(loaded, "hidream"), "a red circle", 3) - draw(reference, "a red circle", 3)).max() <= 2
