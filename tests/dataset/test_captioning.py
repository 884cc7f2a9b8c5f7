"""Auto-captioning with local models: a WD14-style tagger (a tiny ONNX model built here, run by onnxruntime) and a
transformers image-to-text model (a tiny BLIP built from its config), the fill / replace / append modes with a
prefix and suffix, one undo for a whole batch, cancel keeping what is done, and ``kamaal-train dataset caption``."""

from __future__ import annotations

import ast
import csv
import shutil
from pathlib import Path

import pytest
from PIL import Image

from trainer.captioning.batch import CaptionJob, CaptionJournal, caption_images
from trainer.dataset.cli import dataset_main
from trainer.errors import InputError

TAGS = [("red_shirt", 0), ("blue_sky", 0), ("^_^", 0), ("hatsune_miku", 4), ("general", 9)]


def write_tagger(folder: Path, tags=TAGS, side: int = 32) -> Path:
    """A tagger that sees colour: the mean of each BGR channel, through one linear layer and a sigmoid.  red_shirt
    fires on red, blue_sky on blue, ^_^ always (0.90), the character at 0.60, the rating at 0.99."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weights = np.zeros((3, len(TAGS)), np.float32)
    weights[2, 0] = weights[0, 1] = 1 / 20  # R (the last of B, G, R) → red_shirt; B → blue_sky
    bias = np.array([-6.4, -6.4, 2.2, 0.4, 4.6], np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input", "axes"], ["means"], keepdims=0),
         helper.make_node("MatMul", ["means", "weights"], ["logits"]),
         helper.make_node("Add", ["logits", "bias"], ["shifted"]),
         helper.make_node("Sigmoid", ["shifted"], ["output"])],
        "tiny-tagger",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", side, side, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", len(TAGS)])],
        [numpy_helper.from_array(np.array([1, 2], np.int64), "axes"), numpy_helper.from_array(weights, "weights"),
         numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, folder / "model.onnx")
    with (folder / "selected_tags.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tag_id", "name", "category", "count"])
        for index, (name, category) in enumerate(tags):
            writer.writerow([index, name, category, 100])
    return folder


def write_tiny_blip(folder: Path) -> Path:
    """A tiny BLIP captioner built from its config, with a BERT vocabulary of a few words; it never ends a caption
    early, so its caption is never empty."""
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "red", "circle", "blue", "square"]
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(words)}, model_max_length=32)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    torch.manual_seed(0)
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 64, "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id, "sep_token_id": tokenizer.sep_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()
    with torch.no_grad():  # a random model ends at once or says nothing: it writes words up to the token limit
        model.text_decoder.cls.predictions.bias[:len(words)] = -1e4
        model.text_decoder.cls.predictions.bias[5:len(words)] = 0.0
    model.save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> Path:
    return write_tagger(tmp_path_factory.mktemp("tagger") / "wd-tiny-tagger")


@pytest.fixture(scope="module")
def blip(tmp_path_factory) -> Path:
    return write_tiny_blip(tmp_path_factory.mktemp("blip") / "blip")


def colour_images(folder: Path, colours: dict[str, tuple[int, int, int]]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rgb in colours.items():
        paths[name] = folder / f"{name}.png"
        Image.new("RGB", (48, 40), rgb).save(paths[name])
    return paths


def test_the_tagger_reads_the_picture_as_its_model_was_trained_and_keeps_tags_by_threshold(tagger, tmp_path):
    from trainer.captioning.models import CaptionerOptions, open_captioner

    images = colour_images(tmp_path, {"red": (250, 10, 10), "blue": (10, 10, 250)})
    plain = open_captioner(tagger, CaptionerOptions())
    # BGR fed as the taggers were trained: red fires red_shirt, blue fires blue_sky (swapped channels would not).
    assert plain.caption(Image.open(images["red"])) == "red shirt, ^_^"  # most likely first; kaomoji kept
    assert plain.caption(Image.open(images["blue"])) == "blue sky, ^_^"
    every = open_captioner(tagger, CaptionerOptions(character_threshold=0.5, keep_underscores=True,
                                                    blacklist=("^_^",)))
    assert every.caption(Image.open(images["red"])) == "red_shirt, hatsune_miku"  # never the rating


def test_a_folder_that_is_not_a_captioner_is_refused_naming_what_is_missing(tagger, tmp_path):
    from trainer.captioning.models import CaptionerOptions, open_captioner

    half = tmp_path / "half"
    half.mkdir()
    (half / "model.onnx").write_bytes((tagger / "model.onnx").read_bytes())
    with pytest.raises(InputError, match=r"model\.onnx but no selected_tags\.csv"):
        open_captioner(half, CaptionerOptions())
    with pytest.raises(InputError, match=r"is not a captioner"):
        open_captioner(tmp_path, CaptionerOptions())
    wrong = write_tagger(tmp_path / "wrong", tags=TAGS[:3])
    with pytest.raises(InputError, match=r"scores 5 tags but selected_tags\.csv lists 3"):
        open_captioner(wrong, CaptionerOptions())


def test_an_image_to_text_model_writes_what_its_own_generate_says(blip, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from trainer.captioning.models import CaptionerOptions, open_captioner

    image = Image.new("RGB", (40, 30), (200, 30, 30))
    caption = open_captioner(blip, CaptionerOptions(max_new_tokens=6)).caption(image)
    processor = AutoProcessor.from_pretrained(blip)
    model = AutoModelForImageTextToText.from_pretrained(blip).eval()
    with torch.no_grad():
        out = model.generate(**processor(images=image, return_tensors="pt"), max_new_tokens=6, do_sample=False)
    expected = " ".join(processor.batch_decode(out, skip_special_tokens=True)[0].split())
    assert caption == expected and len(caption.split()) >= 3

    # The Dataset page's task, with the options its dialog sends for such a model, gives the same caption.
    from trainer.tasks.runner import run_task

    image.save(tmp_path / "red.png")
    events = Events()
    assert run_task("caption-images", {"model": str(blip), "images": [str(tmp_path / "red.png")],
                                       "options": {"prompt": "", "max_new_tokens": 6}}, events, events) == 0
    assert [event.data for event in events.events if getattr(event, "data", None)] == [
        {"image": str(tmp_path / "red.png"), "caption": expected}]


# A chat turn with an image, as LLaVA-style processors template it (reduced to what a caption needs).
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for part in message['content'] %}"
                 "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_llava(folder: Path) -> Path:
    """A tiny vision-language model (LLaVA: a CLIP vision tower, a Qwen2 language model, the shipped Qwen tokenizer
    with an <image> token) whose processor has a chat template; it answers up to the token limit."""
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from trainer.models.clip_vocab import qwen3_tokenizer

    tokenizer = qwen3_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
                       "projection_dim": 32},
        text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 512},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default")
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None  # a random model would end at once
    model.save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                   chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llava(tmp_path_factory) -> Path:
    return write_tiny_llava(tmp_path_factory.mktemp("llava") / "tiny-llava")


def test_a_vision_language_model_is_asked_the_prompt_and_its_answer_is_the_caption(llava):
    """A processor with a chat template gets the prompt as a chat turn with the image; the caption is the answer
    alone: what the model's own generate adds after that turn, without the turn."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from trainer.captioning.models import CaptionerOptions, open_captioner

    folder = llava
    image = Image.new("RGB", (64, 48), (30, 200, 30))
    captioner = open_captioner(folder, CaptionerOptions(prompt="Describe the colours.", max_new_tokens=5))
    assert captioner.chat
    caption = captioner.caption(image)
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the colours."}]}]
    inputs = processor(images=[image], text=[processor.apply_chat_template(turn, add_generation_prompt=True)],
                       return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    answer = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert caption == " ".join(answer.split()) and caption and "Describe" not in caption


# Qwen2-VL's and Qwen2.5-VL's chat template (from their tokenizer_config.json), reduced to images and text.
QWEN_VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a "
    "helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == "
    "'image' %}<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_qwen_vl(folder: Path, model_type: str) -> Path:
    """A tiny Qwen-VL (``qwen2_5_vl`` or ``qwen3_vl``) laid out as Qwen's own folders are: weights,
    ``preprocessor_config.json`` (a Qwen2VLImageProcessor), the tokenizer with its chat template, no video
    processor config, so that ``AutoProcessor`` asks for torchvision as it does with the real ones.  The shipped
    Qwen tokenizer has the vision tokens (<|vision_start|>, <|image_pad|>…)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from trainer.models.clip_vocab import qwen3_tokenizer

    tokenizer = qwen3_tokenizer()
    tokenizer.chat_template = QWEN_VL_TEMPLATE
    ids = {f"{name}_token_id": tokenizer.convert_tokens_to_ids(f"<|{token}|>") for name, token in
           (("image", "image_pad"), ("video", "video_pad"), ("vision_start",) * 2, ("vision_end",) * 2)}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 512,
            "rope_parameters": rope | ({"mrope_interleaved": True} if model_type == "qwen3_vl" else {})}
    patch = 16 if model_type == "qwen3_vl" else 14
    vision = {"depth": 2, "hidden_size": 32, "num_heads": 2, "patch_size": patch, "spatial_merge_size": 2,
              "temporal_patch_size": 2, **{
                  "qwen2_5_vl": {"intermediate_size": 64, "out_hidden_size": 32, "window_size": 56,
                                 "fullatt_block_indexes": [1]},
                  "qwen3_vl": {"intermediate_size": 64, "out_hidden_size": 32, "num_position_embeddings": 16,
                               "deepstack_visual_indexes": [0]}}[model_type]}
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, text_config=text, vision_config=vision, **ids)
    model = AutoModelForImageTextToText.from_config(config).eval()
    model.generation_config.eos_token_id = None  # a random model would end at once
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    side = patch * 2  # one merged patch: min 2×2 of them, max 4×4 (a real one allows up to 16 million pixels)
    Qwen2VLImageProcessorPil(patch_size=patch, min_pixels=side * side * 4, max_pixels=side * side * 16
                             ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qwen2_5_vl(tmp_path_factory) -> Path:
    return write_tiny_qwen_vl(tmp_path_factory.mktemp("qwen") / "qwen2_5_vl", "qwen2_5_vl")


@pytest.fixture(scope="module")
def qwen3_vl(tmp_path_factory) -> Path:
    return write_tiny_qwen_vl(tmp_path_factory.mktemp("qwen") / "qwen3_vl", "qwen3_vl")


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_vl"])
def test_a_qwen_vl_folder_captions_without_torchvision_as_its_own_generate_does(request, model_type):
    """transformers 5 builds Qwen-VL processors with a video processor that needs torchvision (not installed):
    the captioner builds one for images alone, and its caption is what the model's own generate gives on inputs
    made here by hand — the image processor's patches, the chat turn with one <|image_pad|> per merged patch."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    from trainer.captioning.models import CaptionerOptions, open_captioner

    folder = request.getfixturevalue(model_type)
    with pytest.raises(ImportError, match="Torchvision"):
        AutoProcessor.from_pretrained(folder)  # what the captioner avoids
    image = Image.new("RGB", (90, 60), (30, 60, 200))
    captioner = open_captioner(folder, CaptionerOptions(prompt="Describe the colours.", max_new_tokens=5))
    caption = captioner.caption(image)

    images = AutoImageProcessor.from_pretrained(folder)(images=[image], return_tensors="pt")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the colours."}]}]
    prompt = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    patches = int(images["image_grid_thw"].prod()) // 4  # 2×2 patches merge into one token
    inputs = tokenizer(prompt.replace("<|image_pad|>", "<|image_pad|>" * patches), return_tensors="pt")
    # Which tokens are the picture's: Qwen-VL places them in its 3-D rotary positions by this.
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")).long()
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model.generate(**inputs, **images, max_new_tokens=5, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert patches > 1 and caption == " ".join(answer.split()) and caption


def test_a_large_photo_is_shrunk_to_a_megapixel_before_a_model_sees_it():
    from trainer.captioning.models import MAX_PIXELS, at_most

    photo = Image.new("RGB", (4000, 3000))
    shrunk = at_most(photo, MAX_PIXELS)
    assert shrunk.width * shrunk.height <= MAX_PIXELS and shrunk.size == (1182, 886)  # 4:3 kept
    small = Image.new("RGB", (640, 480))
    assert at_most(small, MAX_PIXELS) is small


def write_tiny_florence2(folder: Path) -> Path:
    """A tiny Florence-2 (transformers' own class: a two-stage DaViT, a one-layer BART) with a byte-level BPE of a few
    words and the <image> token, saved with its processor as florence-community's folders are."""
    import torch
    from transformers import (
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    words = ["<s>", "<pad>", "</s>", "<unk>", "ĠA", "Ġred", "Ġcircle", "Ġon", "Ġblue", "Ġsquare"]
    tokenizer = BartTokenizer(vocab={word: index for index, word in enumerate(words)}, merges=[],
                              extra_special_tokens={"image_token": "<image>"})
    torch.manual_seed(0)
    config = Florence2Config(
        vision_config={"depths": [1, 1], "patch_size": [7, 3], "patch_stride": [4, 2], "patch_padding": [3, 1],
                       "patch_prenorm": [False, True], "embed_dim": [16, 32], "num_heads": [2, 4],
                       "num_groups": [2, 4], "window_size": 2, "projection_dim": 32, "max_position_embeddings": 8,
                       "max_temporal_embeddings": 4},
        text_config={"vocab_size": len(tokenizer), "d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
                     "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64,
                     "decoder_ffn_dim": 64, "max_position_embeddings": 128, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
                     "decoder_start_token_id": tokenizer.eos_token_id},
        image_token_id=tokenizer.image_token_id)
    model = Florence2ForConditionalGeneration(config).eval()
    with torch.no_grad():  # the output layer is the embedding: special tokens score 0, so words win (mostly)
        model.model.language_model.shared.weight[:4] = 0.0
    model.generation_config.eos_token_id = model.generation_config.forced_eos_token_id = None
    model.save_pretrained(folder)
    # 32×32 pixels → 8×8 after the first stage, 4×4 after the second, plus one pooled token: 17 image tokens.
    images = CLIPImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False, image_seq_length=17)
    Florence2Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def florence2(tmp_path_factory) -> Path:
    return write_tiny_florence2(tmp_path_factory.mktemp("florence") / "florence-2")


def test_florence_2_is_given_its_task_prompt_and_writes_what_its_own_generate_says(florence2, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from trainer.captioning.models import FLORENCE_TASK, CaptionerOptions, open_captioner

    folder = florence2
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    for prompt, task in (("<CAPTION>", "<CAPTION>"), ("", FLORENCE_TASK)):  # none given: a detailed caption
        caption = open_captioner(folder, CaptionerOptions(prompt=prompt, max_new_tokens=6)).caption(image)
        with torch.no_grad():
            out = model.generate(**processor(images=image, text=task, return_tensors="pt"), max_new_tokens=6,
                                 do_sample=False)
        assert caption == " ".join(processor.batch_decode(out, skip_special_tokens=True)[0].split()) and caption

    # The same folder with a weight renamed, as in a layout written for other code: refused, not run half-random.
    from safetensors.torch import load_file, save_file

    folder = Path(shutil.copytree(florence2, tmp_path / "renamed"))
    weights = load_file(folder / "model.safetensors")
    renamed = next(key for key in weights if "vision_tower" in key)
    save_file({(f"other.{key}" if key == renamed else key): value for key, value in weights.items()},
              folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"lacks 1 of Florence2ForConditionalGeneration's weights .*laid out"):
        open_captioner(folder, CaptionerOptions())


def test_a_model_bigger_than_the_free_memory_is_refused_before_it_loads(tagger, blip, tmp_path, monkeypatch):
    """The estimate is the weights' files (loaded as stored) with headroom, against the device's free memory."""
    from trainer.captioning import memory, models

    blip = Path(shutil.copytree(blip, tmp_path / "blip"))
    (blip / "pytorch_model.bin").write_bytes(b"0" * 10_000)  # beside .safetensors, transformers never reads it
    weights = (blip / "model.safetensors").stat().st_size
    assert memory.weight_bytes(blip) == weights
    assert memory.weight_bytes(tagger) == (tagger / "model.onnx").stat().st_size

    def never_loaded(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models.TransformersCaptioner, "__init__", never_loaded)
    monkeypatch.setattr(memory, "free_bytes", lambda device: int(weights * 1.1))  # the weights, not the headroom
    with pytest.raises(InputError, match=r"^--model: .*blip needs about 0\.0 GB of memory to caption and this "
                                         r"machine has 0\.0 GB free"):
        models.open_captioner(blip, models.CaptionerOptions())
    monkeypatch.setattr(memory, "free_bytes", lambda device: weights * 2)
    with pytest.raises(AssertionError, match="the model was loaded"):  # enough: it goes on to load
        models.open_captioner(blip, models.CaptionerOptions())


def spec_assignment(name: str):
    """The literal assigned to ``name`` in build.spec (the PyInstaller spec is Python; read, not run)."""
    from tests.conftest import REPO

    tree = ast.parse((REPO / "build.spec").read_text(encoding="utf-8"))
    return next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == name for target in node.targets))


def test_the_packaged_app_collects_the_modules_of_every_class_a_captioner_uses(tagger, blip, llava, qwen2_5_vl,
                                                                               qwen3_vl, florence2):
    """The frozen app has only the modules build.spec collects: every transformers class a tested captioner uses
    (model, processor, image processor, tokenizer) comes from a package in its CAPTIONER_PACKAGES, and the tagger
    runs on onnxruntime, which the spec names too."""
    from tests.conftest import REPO
    from trainer.captioning.models import CaptionerOptions, open_captioner

    packages = set(spec_assignment("CAPTIONER_PACKAGES"))
    used = set()
    for folder in (blip, llava, qwen2_5_vl, qwen3_vl, florence2):
        captioner = open_captioner(folder, CaptionerOptions())
        processor = captioner.processor
        for part in (captioner.model, processor, processor.image_processor, processor.tokenizer):
            module = next(cls.__module__ for cls in type(part).__mro__ if cls.__module__.startswith("transformers."))
            if module.startswith("transformers.models."):
                used.add(module.split(".")[2])
    assert {"blip", "bert", "llava", "clip", "qwen2", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "florence2",
            "roberta"} <= used  # the scan sees them
    assert used <= packages, used - packages
    assert type(open_captioner(tagger, CaptionerOptions()).session).__module__.startswith("onnxruntime.")
    spec = (REPO / "build.spec").read_text(encoding="utf-8")
    assert 'hiddenimports += ["onnxruntime"]' in spec and '"onnxruntime"):' in spec  # module and its metadata


def test_modes_prefix_suffix_and_one_undo_for_the_batch(tmp_path):
    images = colour_images(tmp_path, {"a": (1, 2, 3), "b": (4, 5, 6), "c": (7, 8, 9), "d": (9, 9, 9)})
    pixels = {name: path.read_bytes() for name, path in images.items()}
    (tmp_path / "a.txt").write_text("an old caption", encoding="utf-8")
    (tmp_path / "b.txt").write_text("", encoding="utf-8")
    (tmp_path / "d.txt").mkdir()  # a caption "file" that is a folder: never written over
    order = [images[name] for name in "abcd"]

    def model(image: Path) -> str:
        return f"tags of {image.stem}"

    fill = caption_images(order, model, CaptionJob("fill", prefix="sks, ", suffix=", photo"))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "an old caption"  # it had one
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "sks, tags of b, photo"  # empty: filled
    assert (tmp_path / "c.txt").read_text(encoding="utf-8") == "sks, tags of c, photo"  # none: filled
    assert list(fill.skipped) == [str(tmp_path / "d.txt")]
    append = caption_images(order[:1], model, CaptionJob("append"))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "an old caption, tags of a"
    replace = caption_images(order[:1], model, CaptionJob("replace"))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "tags of a"
    # Undo, newest batch first, puts every file back; a file the batch made is removed again.
    for journal in (replace, append, CaptionJournal.from_json(fill.to_json())):
        journal.undo()
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "an old caption"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "" and not (tmp_path / "c.txt").exists()
    assert {name: path.read_bytes() for name, path in images.items()} == pixels  # the pictures untouched


def test_cancel_keeps_what_is_done_and_a_preview_writes_nothing(tmp_path):
    images = list(colour_images(tmp_path, {f"i{n}": (n, n, n) for n in range(4)}).values())
    seen: list[str] = []
    journal = caption_images(images, lambda image: image.stem, CaptionJob("replace"),
                             progress=lambda done, total, image, text: seen.append(text),
                             cancelled=lambda: len(seen) >= 2)
    assert seen == ["i0", "i1"] and sorted(p.name for p in tmp_path.glob("*.txt")) == ["i0.txt", "i1.txt"]
    journal.undo()
    preview = caption_images(images, lambda image: image.stem, CaptionJob("replace"), write=False)
    assert list(preview.after.values()) == ["i0", "i1", "i2", "i3"] and not list(tmp_path.glob("*.txt"))


def test_the_command_captions_a_folder_and_says_what_is_wrong_with_exit_code_2(tagger, tmp_path, capsys):
    colour_images(tmp_path / "data", {"red": (250, 10, 10), "blue": (10, 10, 250)})
    (tmp_path / "data" / "broken.png").write_bytes(b"not a png")
    assert dataset_main(["caption", str(tmp_path / "data"), "--model", str(tagger), "--preview", "1"]) == 0
    assert "blue.png: blue sky, ^_^" in capsys.readouterr().out and not list((tmp_path / "data").glob("*.txt"))
    assert dataset_main(["caption", str(tmp_path / "data"), "--model", str(tagger), "--prefix", "sks, "]) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "data" / "red.txt").read_text(encoding="utf-8") == "sks, red shirt, ^_^"
    assert "skipped" in err and "broken.png" in err and not (tmp_path / "data" / "broken.txt").exists()
    assert dataset_main(["caption", str(tmp_path / "data"), "--model", str(tmp_path)]) == 2
    assert "is not a captioner" in capsys.readouterr().err


class Events:
    """The event sink and command source of a task run in this process; ``stop_after`` units it sends Stop."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list = []
        self.stop_after = stop_after

    def emit(self, event) -> None:
        self.events.append(event)

    def poll(self):
        from trainer.protocol import Stop, TaskProgress

        units = sum(1 for event in self.events if isinstance(event, TaskProgress) and event.data)
        return Stop(save=False) if self.stop_after is not None and units >= self.stop_after else None


def test_the_page_task_hands_each_caption_over_with_its_progress_and_writes_nothing(tagger, tmp_path):
    from trainer.protocol import Failed, TaskDone
    from trainer.tasks.runner import run_task

    images = colour_images(tmp_path, {"red": (250, 10, 10), "blue": (10, 10, 250), "grey": (128, 128, 128)})
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths = [str(images["red"]), str(tmp_path / "broken.png"), str(images["blue"])]
    events = Events()
    options = {"blacklist": ["^_^"], "keep_underscores": True, "general_threshold": 0.35}
    assert run_task("caption-images", {"model": str(tagger), "images": paths, "options": options},
                    events, events) == 0
    units = [event.data for event in events.events if getattr(event, "data", None)]
    assert units[0] == {"image": paths[0], "caption": "red_shirt"} and units[2] == {"image": paths[2],
                                                                                   "caption": "blue_sky"}
    assert units[1]["image"] == paths[1] and "problem" in units[1]
    assert events.events[-1].result == {"captioner": "WD14 tagger (wd-tiny-tagger)", "captioned": 2,
                                        "skipped": [paths[1]]}
    assert isinstance(events.events[-1], TaskDone) and not list(tmp_path.glob("*.txt"))

    stopping = Events(stop_after=1)  # Stop after the first caption: the task ends there, cancelled
    assert run_task("caption-images", {"model": str(tagger), "images": paths[::2]}, stopping, stopping) == 1
    assert [event.data["image"] for event in stopping.events if getattr(event, "data", None)] == [paths[0]]
    assert isinstance(stopping.events[-1], Failed) and stopping.events[-1].kind == "cancelled"

    refused = Events()
    assert run_task("caption-images", {"model": str(tmp_path), "images": paths}, refused, refused) == 2
    assert refused.events[-1].message.startswith("Captioning model: ") and "is not a captioner" in \
        refused.events[-1].message
