"""The shapes tokenizer: a real CLIP BPE vocabulary in which every world word is one token."""

from __future__ import annotations

import json

from trainer.shapes.tokenizer import CONTEXT_TOKENS, merges_for, write_shapes_tokenizer
from trainer.shapes.world import world_samples, world_words


def test_every_world_word_is_one_token_and_other_text_still_tokenizes(tmp_path):
    from transformers import CLIPTokenizer

    size = write_shapes_tokenizer(tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert len(tokenizer) == size and tokenizer.model_max_length == CONTEXT_TOKENS == 16
    longest = max(len(tokenizer(caption).input_ids) for _, caption, _ in world_samples(500, seed=4))
    assert longest <= CONTEXT_TOKENS  # no world caption is cut off
    for word in world_words():
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    for word in ("sks", "teal", "emblem"):  # room for new concepts
        assert word in world_words()
    pieces = tokenizer("a zebra", add_special_tokens=False).input_ids
    assert len(pieces) > 2 and tokenizer.unk_token_id not in pieces  # byte-level: no unknowns
    ids = tokenizer("a red circle").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id


def test_vocabulary_ids_are_dense_and_merges_unique(tmp_path):
    write_shapes_tokenizer(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert sorted(vocab.values()) == list(range(len(vocab)))
    merges = merges_for(world_words())
    assert len(set(merges)) == len(merges)
