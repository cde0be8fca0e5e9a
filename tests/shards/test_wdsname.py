"""`split_name` / `is_skipped` against WebDataset's own functions, on chosen and generated names."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_iterator

from seta_stream.shards.wdsname import is_skipped, split_name


def _wds_split(path: str) -> tuple[str, str] | None:
    """What `group_by_keys` (lcase=True) makes of one member: (key, field) or None if ignored."""
    samples = list(group_by_keys([{"fname": path, "data": b"", "__url__": "u"}]))
    if not samples:
        return None
    (sample,) = samples
    fields = [k for k in sample if k not in ("__key__", "__url__")]
    (field,) = fields
    return sample["__key__"], field


def _wds_skips(path: str) -> bool:
    """Whether `tar_file_iterator` drops a regular member called `path` (via a real pax tar)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(tarfile.TarInfo(path))
    buf.seek(0)
    names = [f["fname"] for f in tar_file_iterator(buf)]
    assert len(names) <= 1
    return not names


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("x.jpg", ("x", "jpg")),
        ("x.seg.PNG", ("x", "seg.png")),
        ("a.b/c.d/x.jpg", ("a.b/c.d/x", "jpg")),
        ("dir/x.tar.GZ", ("dir/x", "tar.gz")),
        ("./a/x.cls", ("./a/x", "cls")),
        ("/abs/x.json", ("/abs/x", "json")),
        ("a..b.jpg", ("a", ".b.jpg")),
        ("x/.jpg", ("x/", "jpg")),  # the regex falls back to the key "x/"
        ("x.", ("x", "")),
        ("README", None),
        ("dir/.hidden", ("dir/", "hidden")),
        (".hidden", None),
        (".jpg", None),
        ("a.b/c", None),
        ("", None),
        ("画像/ÜBER.JPG", ("画像/ÜBER", "jpg")),
    ],
)
def test_split_name_examples(path: str, expected: tuple[str, str] | None) -> None:
    assert split_name(path) == expected
    assert _wds_split(path) == expected


@pytest.mark.parametrize(
    ("path", "skipped"),
    [
        ("__meta__", True),
        ("__meta__/x.json", True),
        ("__a__b__", True),
        ("____", True),
        ("__", True),  # prefix rule: starts and ends with "__"
        ("___", True),
        ("__a__\n", True),  # re's `$` matches before a final newline
        ("a/__meta__", False),
        ("a/__meta__.json", False),
        ("__meta__.json", False),
        ("__a/b__", False),
        ("_x_.jpg", False),
        ("x.jpg", False),
    ],
)
def test_is_skipped_examples(path: str, skipped: bool) -> None:
    assert is_skipped(path) is skipped
    assert _wds_skips(path) is skipped


_ALPHABET = st.sampled_from(["a", "B", "_", "__", ".", "..", "/", "\n", " ", "é", "İ", "ß", "Σ"])
_NAMES = st.one_of(
    st.lists(_ALPHABET, max_size=12).map("".join),
    st.text(max_size=30),
)


@settings(max_examples=600, deadline=None)
@given(_NAMES)
def test_split_name_matches_webdataset(path: str) -> None:
    key, ext = base_plus_ext(path)
    expected = None if key is None else (key, ext.lower())
    assert split_name(path) == expected
    assert _wds_split(path) == expected


_TAR_NAMES = _NAMES.filter(lambda s: "\x00" not in s)


@settings(max_examples=200, deadline=None)
@given(_TAR_NAMES)
def test_is_skipped_matches_webdataset(path: str) -> None:
    assert is_skipped(path) is _wds_skips(path)
