"""CLIP tokenizer files: where the shipped ones live, how they were made, and a tiny variant for tests.

Stable Diffusion's text encoders all use OpenAI CLIP's byte-level BPE vocabulary (49408 tokens). The
hub is out of reach, so ``resources/tokenizers/clip/`` ships it in Hugging Face format. The files were
derived from ``open_clip/bpe_simple_vocab_16e6.txt.gz`` (MIT, published in the ``open_clip_torch``
wheel on PyPI) exactly the way CLIP's own tokenizer builds its vocabulary::

    python -m trainer.models.clip_vocab bpe_simple_vocab_16e6.txt.gz resources/tokenizers/clip

The tiny models used in tests keep only the first few hundred merges, which is still a valid BPE
(every word falls back to byte pieces), so their token embedding stays small.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

from trainer.dataset.tokens import CLIP_DIR, bytes_to_unicode  # light: shared with the GUI's counter

CLIP_TOKENIZER_DIR = CLIP_DIR

# CLIP's vocabulary: 256 byte symbols, the same with an end-of-word mark, 48894 merges, 2 specials.
CLIP_MERGE_COUNT = 49152 - 256 - 2
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
# OpenCLIP (SD 2.x, SDXL's second encoder) pads with id 0, which is "!"; OpenAI CLIP pads with end-of-text.
OPEN_CLIP_PAD_TOKEN = "!"


def vocabulary(merges: list[str]) -> dict[str, int]:
    """Token → id, in CLIP's order: bytes, bytes + "</w>", one token per merge, then the two specials."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def read_bpe_merges(bpe_gz: Path, count: int = CLIP_MERGE_COUNT) -> list[str]:
    """The merge lines of CLIP's ``bpe_simple_vocab_16e6.txt.gz`` (its first line is a header)."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    return lines[1 : count + 1]


def write_tokenizer_files(merges: list[str], out_dir: Path, *, pad_token: str = END_TOKEN,
                          model_max_length: int = 77) -> Path:
    """Write vocab.json, merges.txt and the two JSON configs that ``CLIPTokenizer.from_pretrained`` reads.

    ``model_max_length`` is the context every prompt is padded to (the text encoders' 77 positions
    for real models; the shapes model reads 16, which makes its pretraining three times faster)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocabulary(merges), ensure_ascii=False), encoding="utf-8")
    # transformers skips the first line of merges.txt, like CLIP skips the header of its gz file.
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": START_TOKEN, "eos_token": END_TOKEN, "pad_token": pad_token, "unk_token": END_TOKEN}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    config = {
        **special,
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out_dir


def shipped_merges(count: int = CLIP_MERGE_COUNT, source: Path = CLIP_TOKENIZER_DIR) -> list[str]:
    """The first ``count`` merges of the shipped tokenizer (all of them by default)."""
    lines = (source / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    return [line for line in lines if line][:count]


T5_TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "resources" / "tokenizers" / "t5"


def t5_tokenizer() -> Any:
    """The shipped T5 tokenizer (SD 3.x's ``tokenizer_3``, Flux's ``tokenizer_2``); see its README."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab_file=str(T5_TOKENIZER_DIR / "spiece.model"),
                           tokenizer_file=str(T5_TOKENIZER_DIR / "tokenizer.json"))


QWEN3_TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "resources" / "tokenizers" / "qwen3"


def qwen3_tokenizer() -> Any:
    """The shipped Qwen3 tokenizer (Z-Image's ``tokenizer``, with Qwen3's chat template); see its README."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(QWEN3_TOKENIZER_DIR), local_files_only=True)


def write_tiny_tokenizer(out_dir: Path, *, merge_count: int, pad_token: str = END_TOKEN) -> int:
    """A smaller but genuine CLIP tokenizer (the first ``merge_count`` merges); returns its vocabulary size."""
    merges = shipped_merges(merge_count)
    write_tokenizer_files(merges, out_dir, pad_token=pad_token)
    return len(vocabulary(merges))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m trainer.models.clip_vocab BPE_SIMPLE_VOCAB_16E6.txt.gz OUT_DIR", file=sys.stderr)
        return 2
    merges = read_bpe_merges(Path(args[0]))
    out = write_tokenizer_files(merges, Path(args[1]))
    print(f"wrote {len(vocabulary(merges))} tokens to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
