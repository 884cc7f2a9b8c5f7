"""``kamaal-train dataset ...``: the dataset library on the command line.

    kamaal-train dataset check DIR [--json] [--resolution N] [--token T] [--template TEXT] [--recursive]
                               [--architecture FAMILY]
    kamaal-train dataset caption DIR --model FOLDER [--mode fill|replace|append] [--prefix P] [--suffix S] ...

The main CLI hands everything after ``dataset`` to ``dataset_main``.  Exit codes follow
DESIGN.md §4: 0 the dataset is usable (at least one usable image), 2 it is not, or the folder
is missing / not a folder (a message names it).  Bad input never ends in a traceback.

Standard library + the dataset library only: no torch is imported for a dataset check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from trainer.captioning.batch import MODES
from trainer.dataset.cache import DatasetCache
from trainer.dataset.captions import DEFAULT_TEMPLATE, DEFAULT_TOKEN
from trainer.dataset.health import DEFAULT_MAX_ASPECT, Progress, check_dataset
from trainer.dataset.pair_health import PairUse
from trainer.dataset.report import Report, Severity
from trainer.dataset.tokens import load_clip_tokenizer
from trainer.families import NAMES

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kamaal-train dataset", description="Inspect a dataset folder.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check", help="report unreadable, duplicate, badly sized or badly captioned images",
        description="Decode every image of DIR and report what would go wrong in training. "
                    "Exit code 0 when at least one image is usable, 2 otherwise.")
    check.add_argument("folder", metavar="DIR", type=Path, help="the dataset folder (images with .txt captions)")
    check.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    check.add_argument("--resolution", type=int, default=512, metavar="N",
                       help="training resolution in pixels; smaller images are reported (default 512)")
    check.add_argument("--token", default=DEFAULT_TOKEN,
                       help=f"instance token for images without a caption (default {DEFAULT_TOKEN!r})")
    check.add_argument("--template", default=DEFAULT_TEMPLATE,
                       help=f"caption for images without one; {{token}} is replaced (default {DEFAULT_TEMPLATE!r})")
    check.add_argument("--max-aspect", type=float, default=DEFAULT_MAX_ASPECT, metavar="R",
                       help=f"report images more elongated than R:1 (default {DEFAULT_MAX_ASPECT:g})")
    check.add_argument("--recursive", action="store_true", help="also check images in subfolders")
    check.add_argument("--architecture", choices=NAMES, metavar="FAMILY",
                       help="the model family the images train (model.architecture): an edit family needs a control "
                            "image for every image, a text-to-image family ignores them (default: not known; a "
                            f"partly paired folder gets warnings). One of: {', '.join(NAMES)}")
    caption = commands.add_parser(
        "caption", help="caption the images with a local model (a tagger or an image-to-text model)",
        description="Write a caption beside each image of DIR with the captioning model in FOLDER (nothing is "
                    "downloaded). Exit code 0 when done, 2 for bad input.")
    caption.add_argument("folder", metavar="DIR", type=Path, help="the dataset folder")
    caption.add_argument("--model", required=True, type=Path, metavar="FOLDER",
                         help="a WD14 tagger (.onnx + selected_tags.csv) or a transformers image-to-text model folder")
    caption.add_argument("--mode", choices=MODES, default="fill",
                         help="fill: only images without a caption (default); replace; append to the caption")
    caption.add_argument("--prefix", default="", help="written before each caption as typed (e.g. 'sks dog, ')")
    caption.add_argument("--suffix", default="", help="written after each caption as typed")
    caption.add_argument("--prompt", default="",
                         help="for a vision-language model (Qwen-VL, LLaVA) the instruction (default 'Describe "
                              "this image.'); for Florence-2 a task such as <CAPTION> (default <DETAILED_CAPTION>); "
                              "for BLIP-like models the caption's start")
    caption.add_argument("--max-tokens", type=int, default=75, metavar="N", help="longest caption, in tokens")
    caption.add_argument("--threshold", type=float, default=0.35, help="taggers: general tags at or above this")
    caption.add_argument("--character-threshold", type=float, default=0.85,
                         help="taggers: character tags at or above this")
    caption.add_argument("--blacklist", default="", help="taggers: tags never written, separated by commas")
    caption.add_argument("--keep-underscores", action="store_true", help="taggers: keep tag_names as they are")
    caption.add_argument("--preview", type=int, default=0, metavar="N",
                         help="print the captions of the first N images without writing anything")
    caption.add_argument("--recursive", action="store_true", help="also caption images in subfolders")
    caption.add_argument("--caption-extension", default=".txt", help="caption files' extension (default .txt)")
    return parser


def _write(stream: TextIO, text: str) -> None:
    """Print without ever failing on a file name the terminal cannot show."""
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, errors="backslashreplace").decode(encoding) + "\n")


def _bad_input(message: str, as_json: bool) -> int:
    _write(sys.stderr, f"kamaal-train dataset: error: {message}")
    if as_json:
        _write(sys.stdout, json.dumps({"usable": False, "error": message}, ensure_ascii=True))
    return EXIT_BAD_INPUT


def _progress_printer(stream: TextIO) -> Progress | None:
    """A progress line on an interactive terminal; nothing when output is redirected."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        stream.write(f"\rchecking {done}/{total} images")
        if done == total:
            stream.write("\r" + " " * 40 + "\r")
        stream.flush()

    return show


def format_report(report: Report) -> list[str]:
    """The human report: a summary, then one line per finding (errors first)."""
    lines = [f"Dataset {report.folder} at resolution {report.resolution}: {report.summary()} "
             f"({report.seconds:.1f} s)"]
    if report.pairs:
        references = sum(len(image.controls) for image in report.images)
        lines.append(f"Pairs: {report.pairs} of {len(report.images)} images have control images "
                     f"({references} control image{'' if references == 1 else 's'} in all)")
    labels = {Severity.ERROR: "error  ", Severity.WARNING: "warning", Severity.INFO: "note   "}
    for finding in report.sorted_findings():
        name = report.relative(finding.file) or str(finding.file)
        lines.append(f"{labels[finding.severity]} {name}: {finding.message} [{finding.code.value}]")
    if not report.usable:
        lines.append("No usable image: fix the errors above before training.")
    return lines


def _check(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if args.resolution < 64 or args.resolution % 8:
        return _bad_input(f"--resolution must be a multiple of 8 and at least 64, got {args.resolution}", args.json)
    if args.max_aspect < 1:
        return _bad_input(f"--max-aspect must be at least 1, got {args.max_aspect:g}", args.json)
    if not folder.exists():
        return _bad_input(f"dataset folder not found: {folder}", args.json)
    if not folder.is_dir():
        return _bad_input(f"not a folder: {folder} (give the folder that holds the images)", args.json)
    pairs = PairUse.for_family(args.architecture) if args.architecture else None
    try:
        # The panel's edits (captions, removed images) and the exact CLIP tokenizer: the same findings as the app.
        report = check_dataset(folder, args.resolution, token=args.token, template=args.template,
                               max_aspect=args.max_aspect, recursive=args.recursive,
                               tokenizer=load_clip_tokenizer(), cache=DatasetCache.for_folder(folder),
                               pairs=pairs, progress=_progress_printer(sys.stderr))
    except OSError as error:  # e.g. permission denied while listing the folder
        return _bad_input(f"cannot read the dataset folder {folder}: {error.strerror or error}", args.json)
    if args.json:
        _write(sys.stdout, report.to_json())
    else:
        for line in format_report(report):
            _write(sys.stdout, line)
    return EXIT_OK if report.usable else EXIT_BAD_INPUT


def _caption(args: argparse.Namespace) -> int:
    """``dataset caption``: the model loads only here (torch or onnxruntime), never for a check."""
    from trainer.captioning.batch import UNREADABLE_IMAGE, CaptionJob, caption_images
    from trainer.dataset.imaging import DatasetImageError, load_rgb
    from trainer.dataset.scan import list_images
    from trainer.errors import InputError

    if not 0 < args.threshold <= 1 or not 0 < args.character_threshold <= 1:
        return _bad_input("--threshold and --character-threshold must be above 0 and at most 1", False)
    if args.max_tokens < 1 or args.preview < 0:
        return _bad_input("--max-tokens must be at least 1 and --preview at least 0", False)
    try:
        images = [item.image for item in list_images(args.folder, recursive=args.recursive,
                                                     caption_extension=args.caption_extension).items]
    except OSError as error:
        return _bad_input(f"cannot read the dataset folder {args.folder}: {error.strerror or error}", False)
    if not images:
        return _bad_input(f"no images in {args.folder}", False)
    try:
        from trainer.captioning.models import CaptionerOptions, open_captioner

        captioner = open_captioner(args.model, CaptionerOptions(
            prompt=args.prompt, max_new_tokens=args.max_tokens, general_threshold=args.threshold,
            character_threshold=args.character_threshold, keep_underscores=args.keep_underscores,
            blacklist=tuple(t for t in args.blacklist.split(",") if t.strip()), device=_device()))
    except InputError as error:
        return _bad_input(str(error), False)
    job = CaptionJob(args.mode, args.prefix, args.suffix, args.caption_extension)

    def caption(image: Path) -> str | None:
        try:
            return captioner.caption(load_rgb(image))
        except (DatasetImageError, OSError) as error:
            _write(sys.stderr, f"kamaal-train dataset: skipped {image}: {error}")
            return None

    def shown(done: int, total: int, image: Path, text: str) -> None:
        _write(sys.stdout if args.preview else sys.stderr, f"[{done}/{total}] {image.name}: {text}")

    chosen = images[:args.preview] if args.preview else images
    journal = caption_images(chosen, caption, job, progress=shown, write=not args.preview)
    for path, why in journal.skipped.items():
        if why != UNREADABLE_IMAGE:  # those were named as they came
            _write(sys.stderr, f"kamaal-train dataset: skipped {path}: it {why}")
    verb = "would write" if args.preview else "wrote"
    _write(sys.stderr, f"{captioner.name}: {verb} {len(journal.after)} caption(s) in {args.folder} ({args.mode})")
    return EXIT_OK


def _device() -> str:
    from trainer.diffusion.components import pick_device

    return pick_device()


def dataset_main(argv: list[str]) -> int:
    """Run ``kamaal-train dataset ARGV...``; returns the exit code (never raises SystemExit)."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed usage (or --help); keep its code
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    return _caption(args) if args.command == "caption" else _check(args)


if __name__ == "__main__":
    raise SystemExit(dataset_main(sys.argv[1:]))
