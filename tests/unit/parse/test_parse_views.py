"""assign_views / missing_views: keywords in captions and file names, then attachment order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow.parse.views import (
    ADDITIONAL,
    CLOSE_UP,
    DISTRIBUTION,
    OBLIQUE,
    REQUIRED_VIEWS,
    assign_views,
    missing_views,
)


def views_of(*filenames: str) -> list[str]:
    return assign_views([(name, "") for name in filenames])


def test_required_views_are_the_design_order() -> None:
    assert REQUIRED_VIEWS == (DISTRIBUTION, CLOSE_UP, OBLIQUE)
    assert len({DISTRIBUTION, CLOSE_UP, OBLIQUE, ADDITIONAL}) == 4


def test_attachment_order_fills_required_views_then_additional() -> None:
    assert views_of("IMG_1.jpg", "IMG_2.jpg", "IMG_3.jpg", "IMG_4.jpg") == [
        DISTRIBUTION,
        CLOSE_UP,
        OBLIQUE,
        ADDITIONAL,
    ]
    assert views_of("IMG_1.jpg") == [DISTRIBUTION]
    assert assign_views([]) == []


@pytest.mark.parametrize(
    ("filename", "view"),
    [
        ("distribution.jpg", DISTRIBUTION),
        ("Overview_arm.jpeg", DISTRIBUTION),
        ("wide-shot.heic", DISTRIBUTION),
        ("whole_leg.png", DISTRIBUTION),
        ("full.back.jpg", DISTRIBUTION),  # the shot kind beats the body site
        ("wide_angle.jpg", DISTRIBUTION),
        ("closeup.jpg", CLOSE_UP),
        ("close-up.jpg", CLOSE_UP),
        ("CloseUp2.jpg", CLOSE_UP),
        ("IMGCloseUp.jpg", CLOSE_UP),
        ("front.jpg", CLOSE_UP),
        ("anterior_view.jpg", CLOSE_UP),
        ("back.jpg", CLOSE_UP),
        ("Posterior.JPG", CLOSE_UP),
        ("macro_lesion.jpg", CLOSE_UP),
        ("dermoscopy1.jpg", CLOSE_UP),
        ("Dermatoscopic-image.jpg", CLOSE_UP),
        ("oblique.jpg", OBLIQUE),
        ("lateral3.jpg", OBLIQUE),
        ("left_side.jpg", OBLIQUE),
        ("angle.jpg", OBLIQUE),
        ("close_up_oblique.jpg", OBLIQUE),  # an oblique close-up is the third view
        ("sideways_closeup.jpg", CLOSE_UP),
    ],
)
def test_keywords_in_file_names(filename: str, view: str) -> None:
    # Put the photo last so that order alone would have made it additional.
    others = [("IMG_1.jpg", ""), ("IMG_2.jpg", ""), ("IMG_3.jpg", "")]
    assert assign_views([*others, (filename, "")])[-1] == view


@pytest.mark.parametrize(
    "filename",
    ["backup.jpg", "fronted.jpg", "closet.jpg", "widespread.jpg", "inside.jpg", "IMG_0042.jpg"],
)
def test_keywords_match_whole_words_only(filename: str) -> None:
    others = [("IMG_1.jpg", ""), ("IMG_2.jpg", ""), ("IMG_3.jpg", "")]
    assert assign_views([*others, (filename, "")])[-1] == ADDITIONAL


def test_caption_outranks_file_name() -> None:
    photos = [
        ("closeup.jpg", "Overview of both legs"),
        ("IMG_2.jpg", "OBLIQUE view"),
        ("IMG_3.jpg", "Close-up"),
    ]
    assert assign_views(photos) == [DISTRIBUTION, OBLIQUE, CLOSE_UP]


def test_empty_caption_falls_back_to_file_name() -> None:
    assert assign_views([("IMG_1.jpg", ""), ("lateral.jpg", "   ")]) == [DISTRIBUTION, OBLIQUE]


def test_keyword_photos_claim_first_and_others_fill_what_is_missing() -> None:
    photos = [("IMG_1.jpg", ""), ("IMG_2.jpg", ""), ("wide.jpg", ""), ("IMG_4.jpg", "")]
    assert assign_views(photos) == [CLOSE_UP, OBLIQUE, DISTRIBUTION, ADDITIONAL]


def test_second_photo_of_a_taken_view_is_additional() -> None:
    photos = [("closeup1.jpg", ""), ("closeup2.jpg", ""), ("IMG_3.jpg", "")]
    assert assign_views(photos) == [CLOSE_UP, ADDITIONAL, DISTRIBUTION]
    assert missing_views(assign_views(photos)) == [OBLIQUE]


def test_explicitly_additional_photo_does_not_fill_a_required_view() -> None:
    assert assign_views([("IMG_1.jpg", "extra photo"), ("IMG_2.jpg", "")]) == [
        ADDITIONAL,
        DISTRIBUTION,
    ]


def test_missing_views_in_design_order() -> None:
    assert missing_views([]) == list(REQUIRED_VIEWS)
    assert missing_views([OBLIQUE, ADDITIONAL]) == [DISTRIBUTION, CLOSE_UP]
    assert missing_views([DISTRIBUTION, CLOSE_UP, OBLIQUE]) == []


def test_non_ascii_text_is_harmless() -> None:
    assert views_of("Fotografía_ÉCLAIRÉE.jpg", "照片.jpg") == [DISTRIBUTION, CLOSE_UP]
    assert assign_views([("x.jpg", "Nahaufnahme — close")]) == [CLOSE_UP]


_NAMES = st.sampled_from(
    ["IMG_1.jpg", "close.jpg", "wide.jpg", "side.jpg", "back.jpg", "extra.jpg", "x", ""]
)


@given(st.lists(st.tuples(_NAMES, st.text(max_size=30) | _NAMES), max_size=12))
def test_every_photo_gets_one_view_and_required_views_at_most_once(
    photos: list[tuple[str, str]],
) -> None:
    views = assign_views(photos)
    assert len(views) == len(photos)
    assert set(views) <= {*REQUIRED_VIEWS, ADDITIONAL}
    for view in REQUIRED_VIEWS:
        assert views.count(view) <= 1
    # With three or more photos nothing is missing unless a photo asked to be additional
    # or two photos named the same view.
    missing = missing_views(views)
    assert len(missing) <= max(0, 3 - len(photos)) + views.count(ADDITIONAL)


def test_photos_from_a_later_reply_fill_only_the_views_still_missing() -> None:
    from mailflow.parse.views import CLOSE_UP, DISTRIBUTION, OBLIQUE, assign_views

    assert assign_views([("IMG_9.jpg", "")], taken=[DISTRIBUTION, CLOSE_UP]) == [OBLIQUE]
    assert assign_views([("wide.jpg", "")], taken=[DISTRIBUTION]) == ["additional"]
