from __future__ import annotations

from clipcls._prompts import DEFAULT_TEMPLATES, expand, fix_articles, text_hash


def test_expand_is_templates_times_names_in_order() -> None:
    assert expand(["cat", "kitten"], ["a {}.", "{}"]) == ["a cat.", "cat", "a kitten.", "kitten"]
    assert all("{}" in t for t in DEFAULT_TEMPLATES)


def test_articles() -> None:
    assert fix_articles("a photo of a ellipse") == "a photo of an ellipse"
    assert fix_articles("A owl and a cat") == "An owl and a cat"
    assert fix_articles("a photo of a star") == "a photo of a star"


def test_text_hash_changes_with_any_text() -> None:
    assert text_hash(["a", "b"]) == text_hash(["a", "b"])
    assert text_hash(["a", "b"]) != text_hash(["b", "a"])
    assert text_hash(["a"]) != text_hash(["a "])
