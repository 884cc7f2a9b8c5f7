"""The captioners, opened from a folder the user picks (heavy: transformers, onnxruntime).

* **WD14-style taggers** (SmilingWolf's wd-*-tagger models and their kin): ``model.onnx`` (any one ``.onnx``) with
  ``selected_tags.csv`` (``tag_id,name,category,count``; category 0 general, 4 character, 9 rating).  The
  picture is padded to a white square, resized to the model's input side and fed as BGR 0–255 floats,
  (1, side, side, 3), as those models were trained; the output is each tag's probability.  General tags at or
  above ``general_threshold`` and character tags at or above ``character_threshold`` are kept, most likely
  first, without the blacklisted ones; underscores become spaces unless ``keep_underscores`` (kaomoji such as
  ``^_^`` keep theirs).
* **transformers models**: any folder ``AutoModelForImageTextToText`` loads (BLIP, BLIP-2, GIT, Florence-2,
  Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA…), with its weights in the dtype they are stored in.  A processor with a
  chat template is asked ``prompt`` as a chat turn with the image and its answer is the caption; one without is
  given the image and ``prompt`` as a text start (BLIP's "a photography of") or task (Florence-2's
  ``<MORE_DETAILED_CAPTION>``; ``<DETAILED_CAPTION>`` when none is given), and the prompt is taken off what it
  returns.  Processors that also take videos
  (the Qwen-VL family) are built for images alone: transformers 5's video processors need torchvision, which
  Kamaal does not install, and a caption never needs them.

Both kinds are refused before loading when their weights would not fit in the free memory (``memory``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from trainer.captioning.folder import TAG_FILE, captioner_kind
from trainer.captioning.memory import check_fits
from trainer.errors import InputError

GENERAL, CHARACTER = 0, 4
# Qwen-VL processors keep a picture's own size up to 12.8 megapixels (some 16,000 image tokens, many GB of
# activations); a caption needs far less, and fixed-size processors (BLIP, Florence-2, LLaVA) shrink it anyway.
MAX_PIXELS = 1024 * 1024
FLORENCE_TASK = "<DETAILED_CAPTION>"  # a few sentences: within CLIP's 75 tokens, unlike <MORE_DETAILED_CAPTION>
KAOMOJI = frozenset({"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o",
                     "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"})


@dataclass(frozen=True)
class CaptionerOptions:
    prompt: str = ""  # VLMs: the instruction; image-to-text models: the text the caption starts with
    max_new_tokens: int = 75
    general_threshold: float = 0.35
    character_threshold: float = 0.85
    blacklist: tuple[str, ...] = ()
    keep_underscores: bool = False
    device: str = "cpu"


class Captioner(Protocol):
    name: str  # for messages and the log: "WD14 tagger (wd-vit-tagger-v3)", "BlipForConditionalGeneration"

    def caption(self, image: Image.Image) -> str: ...


def open_captioner(folder: Path, options: CaptionerOptions, field: str = "--model") -> Captioner:
    """The captioner in ``folder``; ``InputError`` starting with ``field`` (the option or setting that named the
    folder) when it holds none, or half of one."""
    folder = Path(folder)
    kind = captioner_kind(folder, field)
    check_fits(folder, options.device, field)
    if kind == "tagger":
        return OnnxTagger(sorted(folder.glob("*.onnx"))[0], folder / TAG_FILE, options, field)
    return TransformersCaptioner(folder, options, field)


class OnnxTagger:
    def __init__(self, model: Path, tags: Path, options: CaptionerOptions, field: str = "--model") -> None:
        import onnxruntime

        self.options = options
        self.name = f"WD14 tagger ({model.parent.name})"
        self.tags, self.categories = read_tag_list(tags, field)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if options.device.startswith("cuda") \
            else ["CPUExecutionProvider"]
        available = set(onnxruntime.get_available_providers())
        try:
            self.session = onnxruntime.InferenceSession(str(model), providers=[p for p in providers if p in available])
        except Exception as error:  # onnxruntime raises its own exception types for a bad file
            raise InputError(f"{field}: {model} is not an ONNX model onnxruntime can run ({error})") from None
        model_input = self.session.get_inputs()[0]
        shape = model_input.shape
        if len(shape) != 4 or not isinstance(shape[1], int) or shape[1] != shape[2] or shape[3] != 3:
            raise InputError(f"{field}: {model} takes {shape}, not (batch, side, side, 3) images like a WD14 tagger")
        self.side, self.input_name = int(shape[1]), model_input.name
        outputs = self.session.get_outputs()[0].shape
        if outputs[-1] != len(self.tags):
            raise InputError(f"{field}: {model} scores {outputs[-1]} tags but {tags.name} lists {len(self.tags)}; "
                             "they are not from the same model")

    def scores(self, image: Image.Image) -> list[float]:
        import numpy as np

        rgb = image.convert("RGB")
        square = Image.new("RGB", (max(rgb.size),) * 2, (255, 255, 255))
        square.paste(rgb, ((square.width - rgb.width) // 2, (square.height - rgb.height) // 2))
        pixels = np.asarray(square.resize((self.side, self.side), Image.Resampling.BICUBIC), dtype=np.float32)
        batch = np.ascontiguousarray(pixels[:, :, ::-1])[None]  # RGB → BGR, as the taggers were trained
        return [float(v) for v in self.session.run(None, {self.input_name: batch})[0][0]]

    def caption(self, image: Image.Image) -> str:
        options = self.options
        blacklist = {tag.strip().replace(" ", "_").lower() for tag in options.blacklist}
        kept = []
        for tag, category, score in zip(self.tags, self.categories, self.scores(image), strict=True):
            threshold = {GENERAL: options.general_threshold, CHARACTER: options.character_threshold}.get(category)
            if threshold is not None and score >= threshold and tag.lower() not in blacklist:
                kept.append((score, tag))
        kept.sort(key=lambda pair: -pair[0])
        return ", ".join(tag if options.keep_underscores or tag in KAOMOJI else tag.replace("_", " ")
                         for _, tag in kept)


def read_tag_list(path: Path, field: str = "--model") -> tuple[list[str], list[int]]:
    """The tags and their categories from a ``selected_tags.csv``, in the model's output order."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{field}: {path} cannot be read ({error})") from None
    if not rows or not {"name", "category"} <= set(rows[0]):
        raise InputError(f"{field}: {path} is not a tagger's tag list (it needs name and category columns)")
    try:
        return [row["name"] for row in rows], [int(row["category"]) for row in rows]
    except (TypeError, ValueError):
        raise InputError(f"{field}: {path} has a category that is not a number") from None


class TransformersCaptioner:
    def __init__(self, folder: Path, options: CaptionerOptions, field: str = "--model") -> None:
        import torch
        from transformers import AutoModelForImageTextToText

        self.options = options
        try:
            self.processor = load_processor(folder)
            self.model, loading = AutoModelForImageTextToText.from_pretrained(
                folder, local_files_only=True, dtype="auto", device_map=options.device, output_loading_info=True)
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"{field}: {folder} is not an image-to-text model transformers can load offline "
                             f"({str(error).splitlines()[0]})") from None
        except torch.OutOfMemoryError:
            raise InputError(f"{field}: {folder} needs more memory than this machine has free") from None
        except ImportError as error:  # a processor that needs a library Kamaal does not install
            text = str(error).strip()
            needs = (f"the {text.split(' requires the ', 1)[1].split(' library', 1)[0]} library"
                     if " requires the " in text else f"a library that is not installed ({text.splitlines()[0]})")
            raise InputError(f"{field}: {folder} needs {needs}, which Kamaal does not install; use a tagger, BLIP "
                             "or Florence-2 folder") from None
        # transformers starts weights it does not find from random values, with only a warning: a folder written
        # for other code (Microsoft's own Florence-2 layout, which needs trust_remote_code) would caption noise.
        missing = sorted(loading["missing_keys"])  # (weights of another shape are refused while loading)
        if missing:
            raise InputError(f"{field}: {folder} lacks {len(missing)} of {type(self.model).__name__}'s weights (such "
                             f"as {missing[0]}): it is laid out for other code; use the transformers version of the "
                             "model")
        self.model.eval()
        self.name = type(self.model).__name__
        self.chat = bool(getattr(self.processor, "chat_template", None))

    def caption(self, image: Image.Image) -> str:
        import torch

        image = at_most(image.convert("RGB"), MAX_PIXELS)
        prompt = self.options.prompt
        if self.chat:
            messages = [{"role": "user", "content": [{"type": "image"},
                                                      {"type": "text", "text": prompt or "Describe this image."}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            inputs = self.processor(images=[image], text=[text], return_tensors="pt")
        else:
            if not prompt and hasattr(self.processor, "task_prompts_without_inputs"):
                prompt = FLORENCE_TASK  # Florence-2 answers task prompts; without one it is not asked to caption
            inputs = self.processor(images=image, text=prompt or None, return_tensors="pt")
        inputs = inputs.to(self.options.device, dtype=self.model.dtype)  # the pixels in the weights' dtype
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)
        if self.chat or self.model.config.is_encoder_decoder:
            start = inputs["input_ids"].shape[1] if self.chat else 0
            return _clean(self.processor.batch_decode(out[:, start:], skip_special_tokens=True)[0])
        text = _clean(self.processor.batch_decode(out, skip_special_tokens=True)[0])
        prompt = _clean(prompt)
        return _clean(text[len(prompt):]) if prompt and text.lower().startswith(prompt.lower()) else text


def at_most(image: Image.Image, pixels: int) -> Image.Image:
    """``image`` shrunk (aspect kept) to at most ``pixels`` pixels; as it is when it has no more."""
    scale = (pixels / (image.width * image.height)) ** 0.5
    if scale >= 1:
        return image
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def load_processor(folder: Path):
    """The folder's processor; one that also takes videos is built without its video processor when that needs a
    library that is not installed (transformers 5's Qwen-VL video processors need torchvision; their image
    processors have a Pillow version, which ``AutoImageProcessor`` picks without it)."""
    from transformers import AutoConfig, AutoProcessor
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    try:
        return AutoProcessor.from_pretrained(folder, local_files_only=True)
    except ImportError:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        processor_class = PROCESSOR_MAPPING.get(type(config), None)
        if processor_class is None or "video_processor" not in processor_class.get_attributes():
            raise
    return images_only(processor_class).from_pretrained(folder, local_files_only=True)


def images_only(processor_class: type) -> type:
    """``processor_class`` without its video processor: ``ProcessorMixin`` loads, checks and saves the
    sub-processors ``get_attributes`` names, and the Qwen-VL processors touch ``video_processor`` only for
    videos."""

    class ImagesOnlyProcessor(processor_class):
        @classmethod
        def get_attributes(cls) -> list[str]:
            return [name for name in processor_class.get_attributes() if name != "video_processor"]

    ImagesOnlyProcessor.__name__ = ImagesOnlyProcessor.__qualname__ = f"{processor_class.__name__}ForImages"
    return ImagesOnlyProcessor


def _clean(text: str) -> str:
    return " ".join(text.split())
