"""Text rendering: the protocol's MovieLens item text, templates as settings, user and context text."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from recsys.text import (
    TextTemplates,
    render_context,
    render_history,
    render_items,
    render_profile,
    render_users,
    time_of_day,
)

ITEMS = pl.DataFrame(
    {
        "item_id": [1, 2, 3],
        "title": ["Toy Story", "GoldenEye", "Untitled"],
        "year": [1995, None, 1994],
        "genres": [["Animation", "Children's", "Comedy"], ["Action"], []],
        "imdb_url": ["http://x/1", "http://x/2", "http://x/3"],
    },
    schema_overrides={"year": pl.Int64},
)


def test_movielens_default_item_text():
    assert render_items(ITEMS) == ["Toy Story | Animation, Children's, Comedy | 1995", "GoldenEye | Action", "Untitled | 1994"]


def test_item_fields_order_labels_and_attributes():
    items = ITEMS.with_columns(pl.Series("director", ["Lasseter", "Campbell", None]), pl.Series("description", ["toys", " ", None]))
    t = TextTemplates(item_fields=["title", "description", "attributes"], item_labels={"description": "About: "}, item_separator=" / ")
    out = render_items(items, t)
    # url excluded by default, blank description skipped, list attribute joined, numbers printed
    assert out[0] == "Toy Story / About: toys / year: 1995 / genres: Animation, Children's, Comedy / director: Lasseter"
    assert out[2] == "Untitled / year: 1994"


def test_item_text_is_truncated_and_empty_catalogue_renders():
    assert render_items(ITEMS, TextTemplates(max_item_chars=5))[0] == "Toy S"
    assert render_items(ITEMS.head(0)) == []
    assert render_items(pl.DataFrame({"item_id": [1]})) == [""]


def test_templates_from_dict_and_toml(tmp_path):
    t = TextTemplates.from_dict({"item_fields": ["title"], "history_max_items": 3})
    assert t.item_fields == ["title"] and t.history_max_items == 3
    with pytest.raises(ValueError, match="unknown"):
        TextTemplates.from_dict({"item_feilds": ["title"]})
    p = tmp_path / "s.toml"
    p.write_text('[text]\nitem_separator = " - "\nitem_fields = ["title", "year"]\n')
    assert render_items(ITEMS, TextTemplates.from_toml(p))[0] == "Toy Story - 1995"
    assert TextTemplates.from_dict(t.to_dict()) == t


def test_history_newest_first_within_budget():
    texts = [f"item{i}" for i in range(10)]
    assert render_history([1, 2, 3], texts) == "Recently: item3; item2; item1"
    t = TextTemplates(history_max_items=2)
    assert render_history(np.array([1, 2, 3]), texts, t) == "Recently: item3; item2"
    t = TextTemplates(history_max_chars=12)  # "item3; item2" is 12 characters, a third does not fit
    assert render_history([1, 2, 3], texts, t) == "Recently: item3; item2"
    assert render_history([], texts) == ""


def test_profile_and_context():
    assert render_profile({"age": 24, "gender": "M", "occupation": "technician"}) == "24 year old M, technician"
    assert render_profile({"age": 24, "gender": None, "occupation": "writer"}) == "24 year old writer"
    assert render_profile(None) == ""
    ts = dt.datetime(2024, 6, 1, 20, 30, tzinfo=dt.timezone.utc)  # a Saturday evening
    assert render_context({"timestamp": ts, "device": "mobile"}) == "evening, Saturday, device: mobile"
    assert time_of_day(3) == "night" and time_of_day(6) == "morning" and time_of_day(12) == "afternoon"


def test_render_users_parts_in_order():
    ctx = pl.DataFrame({"timestamp": [dt.datetime(2024, 6, 3, 8, tzinfo=dt.timezone.utc)]})
    prof = pl.DataFrame({"age": [30], "gender": ["F"], "occupation": ["writer"]})
    out = render_users([np.array([0, 1])], ITEMS, profiles=prof, context=ctx)
    assert out == ["30 year old F, writer. Now: morning, Monday. Recently: GoldenEye; Toy Story"]
    t = TextTemplates(user_parts=["history"])
    assert render_users([[2]], ITEMS, templates=t) == ["Recently: Untitled"]
    with pytest.raises(ValueError):
        render_users([[0], [1]], ITEMS, profiles=prof)


# ------------------------------------------------------------------ item text from whatever columns are there

from recsys.errors import RecsysError  # noqa: E402
from recsys.text import effective_templates, item_text_fields, require_item_text  # noqa: E402


def test_one_text_per_item_even_when_no_field_renders():
    # a catalogue whose only column besides the id is a number: nothing to read, but still one text per item
    items = pl.DataFrame({"item_id": [1, 2, 3, 4], "price": [1.5, 2.0, 3.0, 4.0]})
    assert render_items(items) == ["", "", "", ""]


def test_single_unnamed_text_column_is_read_plainly():
    items = pl.DataFrame({"item_id": ["a", "b", "c"], "text": ["Stapler, red | Office | Acme", "Pen", None], "stock": [3, 4, 5]})
    assert render_items(items) == ["Stapler, red | Office | Acme", "Pen", ""]
    assert item_text_fields(items) == ["text"]


def test_several_text_columns_in_file_order_with_names():
    items = pl.DataFrame(
        {
            "item_id": [1, 2],
            "product_title": ["Stapler", "Pen"],
            "price": [9.99, 1.0],  # a number: only read when named
            "category": [["Office", "Desk"], []],
            "brand": ["Acme", None],
            "url": ["http://x/1", "http://x/2"],
        }
    )
    assert render_items(items) == ["product_title: Stapler | category: Office, Desk | brand: Acme", "product_title: Pen"]
    # named fields win over the fallback, and a number is read when named
    t = TextTemplates(item_fields=["brand", "product_title", "price"])
    assert render_items(items, t) == ["Acme | Stapler | 9.99", "Pen | 1"]
    assert item_text_fields(items, t) == ["brand", "product_title", "price"]
    # configured fields that are there keep the configured rendering (the MovieLens default)
    assert effective_templates(ITEMS).item_fields == TextTemplates().item_fields


def test_history_texts_fall_back_too():
    items = pl.DataFrame({"item_id": [1, 2], "name": ["Stapler", "Pen"]})
    assert render_users([[0, 1]], items) == ["Recently: Pen; Stapler"]


def test_no_text_at_all_is_a_clear_error():
    items = pl.DataFrame({"item_id": [1, 2], "price": [1.0, 2.0]})
    with pytest.raises(RecsysError, match=r"none of the 2 items has any.*price.*--item-text"):
        require_item_text(render_items(items), items, model="the retriever")
    require_item_text(["", "x"], items)  # some text: fine


def test_item_fields_from_the_pipeline_toml(tmp_path):
    from recsys.retriever.config import RetrieverTrainingArguments

    p = tmp_path / "p.toml"
    p.write_text('[retriever.templates]\nitem_fields = ["title", "brand", "category"]\n')
    assert RetrieverTrainingArguments.from_toml(p).templates.item_fields == ["title", "brand", "category"]
