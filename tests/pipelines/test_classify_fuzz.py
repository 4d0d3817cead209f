"""Fuzzing the classifier pipelines' own parsing and augmentation: any --lr-milestones text or
robustness option is either accepted as what it says or refused naming its flag; crop_flip keeps
any batch's shape and takes its values from the image or the black padding."""

from __future__ import annotations

import argparse

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import fuzz_examples
from latentops.pipelines.classifiers import crop_flip
from latentops.pipelines.classifiers.config import parse_milestones
from latentops.pipelines.classifiers.robustness_suite import SuiteOptions, add_arguments, options_from

NUMBERISH = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 50).map(str),
    st.text(alphabet="0123456789.,-e x", max_size=12),
)


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(
    st.one_of(NUMBERISH, st.lists(st.floats(-1, 2, allow_nan=False), max_size=5).map(lambda v: ",".join(map(str, v))))
)
def test_milestones_parse_to_increasing_fractions_or_are_refused_by_flag(text):
    try:
        values = parse_milestones(text)
    except ValueError as error:
        assert "--lr-milestones" in str(error)
        return
    assert all(0 < v < 1 for v in values) and values == sorted(set(values))
    assert values == [float(part) for part in text.split(",")] if text.strip() else values == []


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(
    st.sampled_from(["snrs_db", "sigma", "pgd_eps", "pgd_iterations", "dropout", "bits", "draws", "images"]), NUMBERISH
)
def test_robustness_options_are_taken_or_refused_by_flag(name, text):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["run", f"--{name.replace('_', '-')}={text}"])
    try:
        options = options_from(args)
    except ValueError as error:
        assert f"--{name.replace('_', '-')}" in str(error)
        return
    assert isinstance(options, SuiteOptions)
    value = getattr(options, name)
    expected = tuple(float(v) for v in text.split(",")) if isinstance(value, tuple) else None
    if expected is not None:
        assert value == pytest.approx(expected, nan_ok=True)


@settings(max_examples=fuzz_examples(60), deadline=None)
@given(st.integers(1, 5), st.integers(1, 3), st.integers(1, 17), st.integers(1, 17), st.integers(0, 2**31 - 1))
def test_crop_flip_keeps_shape_and_draws_only_image_or_padding_values(n, c, h, w, seed):
    torch.manual_seed(seed)
    x = torch.rand(n, c, h, w) * 2 - 1
    out = crop_flip(x)
    assert out.shape == x.shape
    for image, source in zip(out, x):
        allowed = set(source.flatten().tolist()) | {-1.0}
        assert set(image.flatten().tolist()) <= allowed
