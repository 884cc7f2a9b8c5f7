"""Captions: every encoding reads, templates fill in, token counts are conservative."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.dataset import CaptionStatus, count_tokens, estimate_clip_tokens, fill_template, read_caption
from trainer.dataset.captions import decode_caption_bytes, too_long

TEXT = "café crème, sks dog"


@pytest.mark.parametrize(("data", "encoding"), [
    (TEXT.encode("utf-8"), "utf-8"),
    (b"\xef\xbb\xbf" + TEXT.encode("utf-8"), "utf-8"),
    (TEXT.encode("utf-16"), "utf-16"),
    (TEXT.encode("utf-16-le"), "utf-16-le"),
    (TEXT.encode("cp1252"), "cp1252"),
])
def test_captions_decode_whatever_wrote_them(data: bytes, encoding: str) -> None:
    assert decode_caption_bytes(data) == (TEXT, encoding)


def test_latin1_is_the_last_resort() -> None:
    text, encoding = decode_caption_bytes(b"caf\xe9 \x81")  # 0x81 is undefined in cp1252
    assert (text, encoding) == ("café \x81", "latin-1")


def test_read_caption_statuses(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("  a photo\nof  sks \n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text(" \n", encoding="utf-8")
    (tmp_path / "dir.txt").mkdir()
    (tmp_path / "old.txt").write_bytes("crème".encode("cp1252"))
    ok = read_caption(tmp_path / "ok.txt")
    assert (ok.status, ok.text, ok.fallback_encoding) == (CaptionStatus.OK, "a photo of sks", False)
    assert read_caption(tmp_path / "empty.txt").status is CaptionStatus.EMPTY
    assert read_caption(tmp_path / "dir.txt").status is CaptionStatus.DIRECTORY
    assert read_caption(tmp_path / "gone.txt").status is CaptionStatus.MISSING
    assert read_caption(None).status is CaptionStatus.MISSING
    old = read_caption(tmp_path / "old.txt")
    assert (old.text, old.encoding, old.fallback_encoding) == ("crème", "cp1252", True)


def test_template() -> None:
    assert fill_template("a photo of {token}", "sks") == "a photo of sks"
    assert fill_template("{token} in {style}", "ohwx") == "ohwx in {style}"  # other braces stay


def test_token_estimates() -> None:
    assert estimate_clip_tokens("a photo of sks dog") == 5
    # Digits and punctuation count one each; an 11-letter word is estimated at 2 (CLIP: 1).
    assert estimate_clip_tokens("sks dog, 8k, masterpiece!") == 9
    assert not too_long(estimate_clip_tokens("a photo of sks dog on a beach at sunset"))
    assert too_long(estimate_clip_tokens(" ".join(["sks dog running"] * 30)))


def test_a_real_tokenizer_is_used_when_given() -> None:
    calls: list[str] = []

    def tokenizer(text: str) -> list[int]:
        calls.append(text)
        return [0] * 80

    assert count_tokens("short", tokenizer) == 80 and calls == ["short"]


@given(st.lists(st.from_regex(r"[A-Za-z]{1,20}", fullmatch=True), max_size=40))
def test_estimate_never_undercounts_words(words: list[str]) -> None:
    # CLIP gives every word at least one token; the estimate must never promise fewer.
    assert estimate_clip_tokens(" ".join(words)) >= len(words)


@given(st.text())
def test_estimate_accepts_any_text(text: str) -> None:
    assert estimate_clip_tokens(text) >= 0
