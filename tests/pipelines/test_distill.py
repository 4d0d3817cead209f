"""`latentops distill`: a student from a teacher run with each method; the losses against their
definitions; a mismatched layer choice, a missing teacher and a distilled teacher named."""

import json

import pytest
import torch
import torch.nn.functional as F

from latentops.cli import main
from latentops.pipelines import run
from latentops.pipelines.classifiers import ClassifierTask, ClassifyConfig, DistillConfig, DistillTask
from latentops.pipelines.classifiers.distill import hinton_kd, rkd_distance
from latentops.pipelines.classifiers.robustness_suite import SuiteOptions, evaluate_run

COMMON = dict(train_per_class=5, batch_size=10, device="cpu", eval_every=3, eval_batch=30, progress=False)
STUDENT = {k: v for k, v in COMMON.items() if k != "train_per_class"}  # a student learns on its teacher's split


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    run(ClassifierTask, ClassifyConfig(out=str(out), arch="mlp", steps=10, **COMMON))
    return out


@pytest.mark.parametrize("method", ["alone", "hkd", "rkd", "lgg", "hkd+lgg"])
def test_each_method_trains_a_student(teacher, tmp_path, method):
    summary = run(DistillTask, DistillConfig(teacher=str(teacher), arch="mlp", method=method, steps=6,
                                             out=str(tmp_path / method), **STUDENT))  # fmt: skip
    assert summary["task"] == "distillation" and summary["variant"] == method and summary["dataset"] == "digits"
    records = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*(r for r in records if r["kind"] == "train"))
    for term in ("hkd", "rkd", "lgg"):
        assert (f"loss/{term}" in logged) == (term in method.split("+")), term


def test_the_command_and_the_robustness_suite_take_a_student(teacher, tmp_path):
    out = tmp_path / "student"
    args = ["distill", "--teacher", str(teacher), "--arch", "mlp", "--method", "hkd+lgg", "--steps", "4"]
    args += ["--batch-size", "10", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    results = evaluate_run(out, SuiteOptions(snrs_db=(10.0,), draws=1, images=30, pgd_iterations=2), progress=False)
    assert "clean" in results["results"] and "PGD ε=0.01" in results["results"]
    assert main(["report", str(teacher), str(out), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "**digits**" in text and "**digits, distilled students**" in text  # the teacher's table, the students'


def test_bad_teachers_and_layers_are_named(teacher, tmp_path):
    with pytest.raises(FileNotFoundError, match="--teacher"):
        run(DistillTask, DistillConfig(teacher=str(tmp_path / "none"), out=str(tmp_path / "a"), **STUDENT))
    with pytest.raises(ValueError, match="--layers"):  # the MLP teacher has 2 taps, preact-small 5
        run(DistillTask, DistillConfig(teacher=str(teacher), arch="preact-small", method="lgg", steps=2,
                                       out=str(tmp_path / "b"), **STUDENT))  # fmt: skip
    run(DistillTask, DistillConfig(teacher=str(teacher), arch="preact-small", method="lgg", layers="0,1", steps=2,
                                   out=str(tmp_path / "c"), **STUDENT))  # fmt: skip
    with pytest.raises(ValueError, match="distilled"):
        run(DistillTask, DistillConfig(teacher=str(tmp_path / "c"), out=str(tmp_path / "d"), **STUDENT))


def test_hinton_kd_is_the_tempered_kl():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 5, generator=gen), torch.randn(7, 5, generator=gen)
    p = F.softmax(t / 4, 1)
    expected = (p * (p.log() - F.log_softmax(s / 4, 1))).sum(1).mean()
    assert torch.allclose(hinton_kd(s, t, 4.0), expected, atol=1e-6)
    assert hinton_kd(t, t, 4.0).abs() < 1e-6


def test_rkd_distance_ignores_scale_and_sees_shape():
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(9, 6, generator=gen)
    assert rkd_distance(3.0 * t, t) < 1e-10  # distances normalized by their mean
    assert rkd_distance(torch.randn(9, 6, generator=gen), t) > 1e-3
