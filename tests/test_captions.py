"""Varied training captions and the whole-word tokenizer (pipeline/captions.py)."""
import itertools
import re

import numpy as np
import pytest

from pipeline import captions, portraits, preview_model, spec as specmod

SPEC = specmod.load("figures.toml")


@pytest.mark.parametrize("hair, long_hair, outfit, scene", [
    c for c in itertools.product(captions.HAIR, (True, False), captions.OUTFIT, captions.SCENE)
    if (c[2], c[3]) not in captions.EXCLUDED])
def test_the_renderer_reads_back_every_drawn_combination(hair, long_hair, outfit, scene):
    attrs = {"hair": hair, "long_hair": long_hair, "outfit": outfit, "scene": scene}
    assert portraits.attributes(captions.canonical(attrs)) == attrs


def test_captions_vary_name_their_items_attributes_and_include_the_article_prompts():
    items = [captions.item(SPEC.prompts, i, 0) for i in range(600)]
    texts = [c for c, _ in items]
    assert len(set(texts)) > 350  # hardly any two items share a caption
    article = sum(t in SPEC.prompts.values() for t in texts) / len(texts)
    assert 0.2 < article < 0.4
    for text, attrs in items:
        if text in SPEC.prompts.values():
            assert attrs == portraits.attributes(text)
            continue
        words = text.lower()
        named = [h for h, ws in captions.HAIR_WORDS.items()
                 if any(re.search(rf"\b{w} hair", words) for w in ws)]
        assert named in ([], [attrs["hair"]]), (text, attrs)  # never a wrong colour
        if "short" in words.split() or "long" in words.split():
            assert ("long" in words.split()) == attrs["long_hair"], (text, attrs)
    # every attribute value is both named and left unnamed somewhere
    hair_named = [any(f"{w} hair" in t for w in captions.HAIR_WORDS[a["hair"]])
                  for t, a in items if t not in SPEC.prompts.values()]
    assert 0.6 < np.mean(hair_named) < 0.95


def test_same_arguments_same_item_and_the_image_shows_the_attributes():
    caption, image = captions.dataset_item(SPEC.prompts, 5, 0, size=128)
    again = captions.dataset_item(SPEC.prompts, 5, 0, size=128)
    assert caption == again[0] and np.array_equal(image, again[1])
    assert image.shape == (128, 128, 3)


def test_every_caption_word_is_one_token_and_the_article_prompts_fit():
    import tempfile
    from pathlib import Path

    from transformers import CLIPTokenizer

    vocab = captions.vocabulary(SPEC.prompts)
    with tempfile.TemporaryDirectory() as d:
        tok = CLIPTokenizer.from_pretrained(preview_model.write_tokenizer(Path(d), vocab),
                                            model_max_length=77)
        for i in range(200):
            text = captions.item(SPEC.prompts, i, 1)[0]
            for word in re.findall(r"[a-z]+", text.lower()):
                assert tok.tokenize(word) == [f"{word}</w>"], word
        for prompt in SPEC.prompts.values():
            assert len(tok(prompt).input_ids) <= 77  # nothing cut off
        assert len(tok.tokenize("zyxw")) == 4  # an unknown word still tokenizes, byte by byte


def test_the_shipped_tokenizer_is_the_caption_vocabulary_s_and_without_words_bytes_only():
    import json

    from pipeline import model

    vocab, merges = preview_model.tokenizer_files(captions.vocabulary(SPEC.prompts))
    assert vocab == (model.PREVIEW_DIR / "tokenizer" / "vocab.json").read_bytes()
    assert merges == (model.PREVIEW_DIR / "tokenizer" / "merges.txt").read_bytes()
    plain, _ = preview_model.tokenizer_files()
    whole = [t for t in json.loads(vocab) if len(t) > 5 and t.endswith("</w>")]
    assert whole and not [t for t in json.loads(plain) if t in whole]
