"""Stable Diffusion 3.5 as Stability ships it and ComfyUI users keep it: the single file (MMDiT under
``model.diffusion_model.``, the VAE, and the three text encoders under ``text_encoders.*`` or as files of their
own in ComfyUI's folders), read offline into the very model it came from; Medium told from Large by its second
attention; full/frozen runs write the file back bit for bit; the kohya LoRA names Stability's layers, q, k and v
fused; wrong or missing files are refused naming the field."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from trainer.errors import InputError
from trainer.families import family
from trainer.models import inspect_model, load_model
from trainer.models.info import MODEL_CONFIGS

COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
# A Medium-style tiny MMDiT: MMDiT-X's second image attention in its first block, and SD 3.5's q/k RMS norms.
MEDIUM_EXTRAS = {"dual_attention_layers": [0], "qk_norm": "rms_norm"}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def save(tensors: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in tensors.items()}, path)
    return path


@pytest.fixture(scope="module")
def stability(tmp_path_factory, tiny_models):
    """A tiny SD 3.5 as Stability and ComfyUI keep it: models/checkpoints/ with the whole file (encoders inside)
    and a bare one (MMDiT and VAE), models/clip/ with clip_l (Hugging Face layout), clip_g (OpenCLIP's layout)
    and t5xxl (no tied copy); the pipeline it came from and its config folder."""
    from trainer.models.original_layout import open_clip_to_original
    from trainer.models.sd3_layout import pipeline_to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("stability")
    model = tiny_models["sd3"]
    pipe = load_model(model).pipeline
    whole = pipeline_to_original(pipe)
    models = root / "models"
    save(whole, models / "checkpoints" / "sd3.5-tiny.safetensors")
    save({k: v for k, v in whole.items() if not k.startswith("text_encoders.")},
         models / "checkpoints" / "sd3.5-tiny-bare.safetensors")
    save({f"text_model.{k}" if not k.startswith(("text_model.", "text_projection")) else k: v
          for k, v in pipe.text_encoder.state_dict().items()}, models / "clip" / "clip_l.safetensors")
    save(open_clip_to_original(pipe.text_encoder_2.state_dict(), ""), models / "clip" / "clip_g.safetensors")
    save({k: v for k, v in pipe.text_encoder_3.state_dict().items() if k != "encoder.embed_tokens.weight"},
         models / "clip" / "t5xxl_fp16.safetensors")
    return {"pipe": pipe, "model": model, "models": models, "whole": whole,
            "config_dir": write_tiny_config_dir(model, root / "config")}


def same_weights(a, b, components=COMPONENTS) -> None:
    for name in components:
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        assert all(torch.equal(left[k], right[k]) for k in left), name


def test_stabilitys_file_with_its_encoders_inside_loads_offline_into_the_model_it_came_from(stability, no_network):
    """The whole file, read with the network blocked: every tensor of all five parts as in the diffusers folder;
    the memory box counts each part under the family's names (the MMDiT with its positional table)."""
    from trainer.tasks.measure import count_parameters

    path = stability["models"] / "checkpoints" / "sd3.5-tiny.safetensors"
    loaded = load_model(path, config_dir=stability["config_dir"], expected_architecture="sd3")
    assert loaded.info.architecture == "sd3" and loaded.info.source_kind == "single_file"
    assert loaded.info.prediction_type == "flow_matching" and loaded.warnings == []
    same_weights(stability["pipe"], loaded.pipeline)
    def stored(module: torch.nn.Module) -> int:  # parameters (T5's tied embedding once) and saved buffers
        kept = module.state_dict()
        return sum(p.numel() for p in module.parameters()) + sum(b.numel() for n, b in module.named_buffers()
                                                                 if n in kept)

    counts = count_parameters(path)
    assert counts == {name: stored(getattr(stability["pipe"], name)) for name in COMPONENTS}


def test_a_file_without_encoders_takes_them_from_comfyuis_folders(stability, no_network):
    """The bare file finds clip_l, clip_g (OpenCLIP's layout) and t5xxl in models/clip beside its folder."""
    loaded = load_model(stability["models"] / "checkpoints" / "sd3.5-tiny-bare.safetensors",
                        config_dir=stability["config_dir"])
    assert loaded.warnings == []
    same_weights(stability["pipe"], loaded.pipeline)


def test_named_encoder_files_load_in_any_order_and_t5_may_be_left_out(stability, tmp_path):
    clip = stability["models"] / "clip"
    files = {name: shutil.copy(clip / f"{name}.safetensors", tmp_path / f"my-{name}.safetensors")
             for name in ("clip_l", "clip_g", "t5xxl_fp16")}
    alone = tmp_path / "elsewhere" / "x"
    alone.mkdir(parents=True)
    bare = shutil.copy(stability["models"] / "checkpoints" / "sd3.5-tiny-bare.safetensors", alone / "sd3.safetensors")
    config = stability["config_dir"]
    loaded = load_model(bare, config_dir=config, text_encoder_files=[str(files[n]) for n in ("t5xxl_fp16", "clip_g",
                                                                                                "clip_l")])
    same_weights(stability["pipe"], loaded.pipeline)

    without_t5 = load_model(bare, config_dir=config, text_encoder_files=[str(files["clip_l"]), str(files["clip_g"])])
    assert without_t5.pipeline.text_encoder_3 is None and without_t5.pipeline.tokenizer_3 is None
    (warning,) = without_t5.warnings
    assert "loaded without its T5-XXL text encoder" in warning and "model.text_encoder_files" in warning
    same_weights(stability["pipe"], without_t5.pipeline, COMPONENTS[:-1])
    image = without_t5.pipeline("a red circle", width=64, height=64, num_inference_steps=2,
                                generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)  # T5's part of the conditioning is zeros, as in diffusers' own pipeline


def test_the_block_tree_reads_an_sd3_file_with_named_clips_and_no_t5(stability, tmp_path, monkeypatch):
    """The Frozen-layers tree of a bare file with its two CLIP files named (the tiny configs stand in for the
    shipped ones): the MMDiT's blocks and both CLIPs are listed, the absent T5 is not."""
    import trainer.models.sd3_single as sd3_single
    from trainer.freezing import model_blocks

    shutil.copytree(stability["config_dir"], tmp_path / "configs" / "sd3.5-large")
    monkeypatch.setattr(sd3_single, "MODEL_CONFIGS", tmp_path / "configs")
    alone = tmp_path / "a" / "b"
    alone.mkdir(parents=True)
    bare = shutil.copy(stability["models"] / "checkpoints" / "sd3.5-tiny-bare.safetensors", alone / "sd3.safetensors")
    clip = stability["models"] / "clip"
    blocks = model_blocks(bare, 1, ["transformer_blocks.0"],
                          text_encoder_files=[str(clip / "clip_g.safetensors"), str(clip / "clip_l.safetensors")])
    assert set(blocks) == {"transformer", "text_encoder", "text_encoder_2"}
    assert {row["block"] for row in blocks["transformer"]} >= {"transformer_blocks"}


def test_missing_and_wrong_companions_are_refused_naming_the_field(stability, tmp_path):
    clip = stability["models"] / "clip"
    config = stability["config_dir"]
    alone = tmp_path / "a" / "b"
    alone.mkdir(parents=True)
    bare = shutil.copy(stability["models"] / "checkpoints" / "sd3.5-tiny-bare.safetensors", alone / "sd3.safetensors")
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .*sd3\.safetensors holds no CLIP-L text "
                                         r"encoder \(text_encoders\.clip_l\.transformer\.\*\); choose its file "
                                         r"\(clip_l\.safetensors\)"):
        load_model(bare, config_dir=config)
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .* holds no CLIP-G text encoder"):
        load_model(bare, config_dir=config, text_encoder_files=[str(clip / "clip_l.safetensors")])
    vae_only = save({k: v for k, v in stability["whole"].items() if k.startswith("first_stage_model.")},
                    tmp_path / "vae.safetensors")
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .*vae\.safetensors is neither a CLIP nor a T5"):
        load_model(bare, config_dir=config, text_encoder_files=[str(vae_only)])
    no_vae = save({k: v for k, v in stability["whole"].items() if not k.startswith("first_stage_model.")},
                  tmp_path / "no-vae.safetensors")
    with pytest.raises(InputError, match=r"model\.vae_file: .*no-vae\.safetensors holds no VAE"):
        load_model(no_vae, config_dir=config)
    named_vae = load_model(no_vae, config_dir=config, vae_file=str(vae_only))  # the VAE as a file of its own
    same_weights(stability["pipe"], named_vae.pipeline, ("vae",))
    with pytest.raises(InputError, match=r"model\.vae_file: .*clip_l\.safetensors does not hold an SD 3\.5 VAE"):
        load_model(no_vae, config_dir=config, vae_file=str(clip / "clip_l.safetensors"))


def test_files_that_are_not_sd35_are_refused_by_name(stability, tmp_path):
    tiny = stability["models"] / "checkpoints" / "sd3.5-tiny.safetensors"
    # Against the shipped SD 3.5 Large configs the tiny MMDiT's size is named (before anything is built).
    with pytest.raises(InputError, match=r"model\.path: .* holds an SD 3 MMDiT of 2 blocks 32 wide, but the config "
                                         r"it is read with \(.*sd3\.5-large.*\) is 38 blocks 2432 wide"):
        load_model(tiny)
    flux = save({"double_blocks.0.img_attn.qkv.weight": torch.zeros(6, 2),  # Flux.1's per-block modulation
                 "double_blocks.0.img_mod.lin.weight": torch.zeros(6, 2)}, tmp_path / "flux1-dev.safetensors")
    with pytest.raises(InputError, match=r"holds Flux\.1 weights, but model\.architecture is 'sd3'"):
        load_model(flux, expected_architecture="sd3")
    clip_only = stability["models"] / "clip" / "clip_l.safetensors"
    with pytest.raises(InputError, match=r"model\.path: .*clip_l\.safetensors is not a Stable Diffusion checkpoint"):
        load_model(clip_only, expected_architecture="sd3")


def test_medium_files_are_told_apart_by_their_second_attention_and_load_whole(stability, tmp_path):
    """MMDiT-X (SD 3.5 Medium: ``x_block.attn2`` in its first blocks, q/k norms): detected from the keys, read
    back by diffusers' own SD3 converter key for key, and loaded whole by Kamaal's reader."""
    import diffusers
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    from trainer.families.sd3 import transformer_variant
    from trainer.models.sd3_layout import pipeline_to_original, to_original

    pipe = stability["pipe"]
    config = {k: v for k, v in pipe.transformer.config.items() if not k.startswith("_")} | MEDIUM_EXTRAS
    torch.manual_seed(3)
    medium = diffusers.SD3Transformer2DModel(**config)
    original = to_original(medium.state_dict(), dict(medium.config))
    assert {"joint_blocks.0.x_block.attn2.qkv.weight", "joint_blocks.0.x_block.attn.ln_q.weight",
            "joint_blocks.0.context_block.attn.ln_k.weight"} <= original.keys()
    assert transformer_variant(original) == "sd3.5-medium"
    assert transformer_variant(stability["whole"]) == "sd3.5-large"
    converted = convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
    state = medium.state_dict()
    assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)

    folder = shutil.copytree(stability["config_dir"], tmp_path / "config-medium")
    (folder / "transformer" / "config.json").write_text(json.dumps(dict(medium.config)), encoding="utf-8")
    pipe.transformer, tiny = medium, pipe.transformer
    try:
        path = save(pipeline_to_original(pipe), tmp_path / "sd3.5_medium.safetensors")
        loaded = load_model(path, config_dir=folder)
        same_weights(pipe, loaded.pipeline)
    finally:
        pipe.transformer = tiny
    with pytest.raises(InputError, match=r"2 blocks 32 wide, a second image attention in blocks 0–0 \(MMDiT-X\), but "
                                         r"the config .* is 2 blocks 32 wide;"):
        load_model(path, config_dir=stability["config_dir"])


def test_the_shipped_sd35_configs_are_the_released_models():
    """Large and Medium as released, built on the meta device: parameter counts (Large's are the registry's),
    what diffusers and Kamaal's detector recognise in the file Kamaal writes for them, and — thin tensors of the
    true heights — diffusers' own SD3 converter reads that file's MMDiT back key for key, value for value."""
    import diffusers
    import transformers
    from diffusers.loaders.single_file_utils import (
        convert_sd3_transformer_checkpoint_to_diffusers,
        infer_diffusers_model_type,
    )

    from trainer.families.sd3 import transformer_variant
    from trainer.models.detect import detect_architecture
    from trainer.models.sd3_layout import pipeline_to_original, to_original

    reference = family("sd3").memory.reference_parameters
    transformers_counts = {"sd3.5-large": reference["transformer"], "sd3.5-medium": 2_243_171_520}
    for variant, diffusers_type in (("sd3.5-large", "sd35_large"), ("sd3.5-medium", "sd35_medium")):
        folder = MODEL_CONFIGS / variant

        class Parts:
            pass

        parts = Parts()
        with torch.device("meta"):
            parts.transformer = diffusers.SD3Transformer2DModel.from_config(
                diffusers.SD3Transformer2DModel.load_config(folder / "transformer"))
            parts.vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(folder / "vae"))
            for spec in family("sd3").text_encoders:
                config_class = transformers.T5Config if spec.tokenizer_kind == "t5" else transformers.CLIPTextConfig
                setattr(parts, spec.component, getattr(transformers, spec.transformers_class)(
                    config_class.from_pretrained(folder / spec.component)))
        counts = {name: sum(p.numel() for p in getattr(parts, name).parameters()) for name in COMPONENTS}
        assert counts == {**reference, "transformer": transformers_counts[variant]}, variant
        original = pipeline_to_original(parts)
        assert infer_diffusers_model_type(original) == diffusers_type
        assert transformer_variant(original) == variant
        assert detect_architecture({k: tuple(v.shape) for k, v in original.items()}, variant) == "sd3"
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        assert index["_class_name"] == "StableDiffusion3Pipeline"

        generator = torch.Generator().manual_seed(0)
        thin = {key: torch.randn((*value.shape[:1], *([1] if value.dim() > 1 else [])), generator=generator)
                for key, value in parts.transformer.state_dict().items()}
        converted = convert_sd3_transformer_checkpoint_to_diffusers(
            {f"model.diffusion_model.{k}": v for k, v in to_original(thin, dict(parts.transformer.config)).items()})
        assert converted.keys() == thin.keys() and all(torch.equal(converted[k], thin[k]) for k in thin), variant


@pytest.mark.slow
def test_a_frozen_run_from_a_stability_file_writes_one_that_loads_back_bit_for_bit(tmp_path, stability, shapes_dataset,
                                                                                  monkeypatch):
    """Trained from the bare file with its encoders in ComfyUI's folders (the tiny configs stand in for the
    shipped ones), a frozen run writes its diffusers folder and Stability's whole file; our detector calls that
    file SD 3.5, and it loads back into exactly the weights of the folder beside it."""
    import trainer.models.sd3_single as sd3_single
    from tests.diffusion.conftest import diffusion_config
    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed, Finished

    shutil.copytree(stability["config_dir"], tmp_path / "configs" / "sd3.5-large")
    monkeypatch.setattr(sd3_single, "MODEL_CONFIGS", tmp_path / "configs")
    config = diffusion_config(stability["models"] / "checkpoints" / "sd3.5-tiny-bare.safetensors", shapes_dataset,
                              "sd3", mode="frozen", frozen={"trainable": ["transformer_blocks.0"]},
                              training={"steps": 2, "eval_every": 2}, sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    assert single.name == "tiny.safetensors"
    keys = set(load_file(single))
    for prefix in ("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.", "first_stage_model.encoder.",
                   "text_encoders.clip_l.transformer.text_model.final_layer_norm.",
                   "text_encoders.clip_g.transformer.text_model.final_layer_norm.",
                   "text_encoders.t5xxl.transformer.shared.weight"):
        assert any(key.startswith(prefix) for key in keys), prefix
    info = inspect_model(single)
    assert info.architecture == "sd3" and info.source_kind == "single_file"
    trained = load_model(folder).pipeline
    back = load_model(single, expected_architecture="sd3").pipeline  # the same stand-in configs
    same_weights(trained, back)
    moved = [key for key, value in trained.transformer.state_dict().items()
             if not torch.equal(value, stability["pipe"].transformer.state_dict()[key])]
    assert moved and all(key.startswith("transformer_blocks.0.") for key in moved)


def test_a_lora_run_trains_on_a_file_without_t5_and_says_so(tmp_path, stability, shapes_dataset, monkeypatch):
    """SD 3.5 runs without T5 as diffusers' pipeline does (its part of the prompt is zeros): a LoRA run, the CLIP
    text encoders trained too, from the bare file with only the two CLIP files named."""
    import trainer.models.sd3_single as sd3_single
    from tests.diffusion.conftest import diffusion_config
    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed, Finished
    from trainer.runfolder import RunFolder

    shutil.copytree(stability["config_dir"], tmp_path / "configs" / "sd3.5-large")
    monkeypatch.setattr(sd3_single, "MODEL_CONFIGS", tmp_path / "configs")
    clip = stability["models"] / "clip"
    alone = tmp_path / "elsewhere" / "x"  # no ComfyUI folders beside it: T5 is not found
    alone.mkdir(parents=True)
    bare = shutil.copy(stability["models"] / "checkpoints" / "sd3.5-tiny-bare.safetensors", alone / "sd3.safetensors")
    config = diffusion_config(bare, shapes_dataset, "sd3", model={
        "architecture": "sd3", "path": str(bare),
        "text_encoder_files": [str(clip / "clip_l.safetensors"), str(clip / "clip_g.safetensors")]},
        lora={"rank": 4, "alpha": 8.0, "train_text_encoder": True},
        training={"steps": 4, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 2, "seed": 1},
        sampling={"prompts": ["a red circle"], "seeds": [7], "inference_steps": 2, "at_start": False})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert "loaded without its T5-XXL text encoder" in RunFolder(tmp_path / "run").log_path.read_text(encoding="utf-8")
    keys = set(load_file(Path(rec.of(Finished)[0].outputs[-1])))
    assert any(key.startswith("transformer.") for key in keys) and any(key.startswith("text_encoder_2.")
                                                                          for key in keys)
