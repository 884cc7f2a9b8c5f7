"""The text path of transformers' ``Qwen3VLProcessor``, for pipelines that take one (Qwen-Image 2.1's ``processor``).

transformers 5 builds a Qwen-VL processor only with its video processor, which needs torchvision, a library Kamaal
does not install.  Text-to-image training and previews give the processor text alone, so what they need is its
tokenizer and chat template: :class:`Qwen3VLTextProcessor` is that, called as the pipeline calls the processor, and
it refuses images by name rather than failing somewhere inside transformers.

A model folder's ``processor/`` holds the tokenizer files and the chat template (``chat_template.jinja`` or
``chat_template.json``); where it has no template, Qwen-VL's rendering of text messages is used
(``<|im_start|>role\\n…<|im_end|>\\n``, the text parts of a message joined), which is all the text path reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from transformers import AutoTokenizer, BatchEncoding, ProcessorMixin

# Qwen2-VL/Qwen3-VL's chat template, text messages only: a message's content is a string or a list of parts, of
# which the text parts are written in order (image and video parts are what this processor refuses).
TEXT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class Qwen3VLTextProcessor(ProcessorMixin):
    """A Qwen3-VL processor for text: its tokenizer and chat template, and the ``mm_token_type_ids`` the real
    processor adds (all 0, text) so the encoder reads the same inputs."""

    attributes: ClassVar[list[str]] = ["tokenizer"]
    # What a folder Kamaal writes names in ``model_index.json`` (``folder_dtypes.save_diffusers_folder``), so that
    # diffusers loads it with the real processor wherever torchvision is installed.
    published_as: ClassVar[tuple[str, str]] = ("transformers", "Qwen3VLProcessor")
    # The real processor's image and video halves: copied from the folder read, where it has them.
    _VISION_FILES: ClassVar[tuple[str, ...]] = ("preprocessor_config.json", "video_preprocessor_config.json",
                                                "processor_config.json")

    def __init__(self, tokenizer: Any, chat_template: str | None = None, source: Path | None = None) -> None:
        # ProcessorMixin's own __init__ checks each attribute's class against the processor's auto mappings; a
        # tokenizer is all there is to check here.
        self.tokenizer = tokenizer
        self.chat_template = chat_template or TEXT_CHAT_TEMPLATE
        self.source = source

    def __call__(self, text: str | list[str] | None = None, images: Any = None, videos: Any = None,
                 **kwargs: Any) -> BatchEncoding:
        if images is not None or videos is not None:
            raise ValueError("Kamaal reads Qwen-VL prompts as text only: condition images need the Qwen3-VL "
                             "processor's image and video parts, which need torchvision (not installed)")
        encoded = self.tokenizer(text, **kwargs)
        encoded["mm_token_type_ids"] = encoded["input_ids"] * 0
        return encoded

    def apply_chat_template(self, conversation: list[dict] | list[list[dict]], chat_template: str | None = None,
                            tokenize: bool = False, return_dict: bool = False, add_generation_prompt: bool = False,
                            **kwargs: Any) -> Any:
        """As ``ProcessorMixin.apply_chat_template`` answers for text: the rendered conversation(s) or, tokenized,
        a batch of token lists (one conversation is a batch of one)."""
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        rendered = [self.tokenizer.apply_chat_template(list(one), chat_template=chat_template or self.chat_template,
                                                       tokenize=False, add_generation_prompt=add_generation_prompt)
                    for one in (conversation if batched else [conversation])]
        if not tokenize:
            return rendered if batched else rendered[0]
        encoded = self(text=rendered, add_special_tokens=False, **kwargs)
        return encoded if return_dict else encoded["input_ids"]

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> list[str]:
        """The tokenizer's files and the chat template, as a Qwen3-VL ``processor/`` folder keeps them."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        saved = list(self.tokenizer.save_pretrained(folder))
        (folder / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")
        saved.append(str(folder / "chat_template.jinja"))
        for name in self._VISION_FILES if self.source is not None else ():
            if (self.source / name).is_file() and (self.source / name).resolve() != (folder / name).resolve():
                (folder / name).write_bytes((self.source / name).read_bytes())
                saved.append(str(folder / name))
        return saved

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs: Any) -> Qwen3VLTextProcessor:
        """From a ``processor/`` folder (``subfolder`` as diffusers passes it), offline."""
        path = Path(folder) / kwargs.get("subfolder", "")
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(tokenizer, folder_chat_template(path), path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokenizer={type(self.tokenizer).__name__}, {len(self.tokenizer)} tokens)"


def folder_chat_template(folder: Path) -> str | None:
    """The folder's own chat template: ``chat_template.jinja``, else ``chat_template.json``'s."""
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
    return None


def text_processor(tokenizer: Any) -> Qwen3VLTextProcessor:
    """A text processor over ``tokenizer`` (the tiny model's: the shipped Qwen3 vocabulary, whose special tokens
    include Qwen-VL's ``<|vision_start|>``, ``<|image_pad|>`` … at Qwen3-VL's ids)."""
    return Qwen3VLTextProcessor(tokenizer)


def pipeline_parts(folder: Path) -> dict[str, Any]:
    """What ``QwenImage21Pipeline.from_pretrained`` is given for a folder: its processor as text, so that diffusers
    does not build the real one (which needs torchvision)."""
    return {"processor": Qwen3VLTextProcessor.from_pretrained(folder / "processor")}
