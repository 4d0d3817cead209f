"""`latentops robustness RUN...` on a trained classifier run: each perturbation as its helper defines
it, the achieved SNRs and the PGD ball checked, dropout p = 0 equal to clean, the results written
into the run and read back, bad settings and damaged runs named."""

import json

import pytest

from latentops.cli import main
from latentops.pipelines import run
from latentops.pipelines.classifiers import ClassifierTask, ClassifyConfig
from latentops.pipelines.classifiers.robustness_suite import SuiteOptions, evaluate_run, load_classifier

SMALL = SuiteOptions(snrs_db=(20.0, 5.0), dropout=(0.0, 0.4), draws=2, images=60, pgd_iterations=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    common = dict(arch="mlp", train_per_class=10, steps=20, batch_size=20, device="cpu", progress=False)
    run(ClassifierTask, ClassifyConfig(out=str(root / "ce"), **common))
    run(ClassifierTask, ClassifyConfig(out=str(root / "geo"), loss="geo", **common))
    return root


def test_the_suite_measures_each_perturbation_as_defined(trained):
    document = evaluate_run(trained / "ce", SMALL, progress=False)
    assert json.loads((trained / "ce" / "robustness.json").read_text()) == document
    assert (trained / "ce" / "robustness.png").is_file()
    results = document["results"]
    assert document["images"] == 60
    clean = results["clean"]["accuracy"][0]
    for snr in SMALL.snrs_db:
        noise = results[f"noise {snr:g} dB"]
        assert len(noise["accuracy"]) == 2
        low, high = noise["achieved_snr_db"]
        assert abs(low - snr) < 0.1 and abs(high - snr) < 0.1
    assert results["PGD ε=0.01"]["max_linf"] <= 0.01 + 1e-6
    assert results["dropout p=0"]["accuracy"] == [clean, clean]  # p = 0 is the clean model, exactly
    assert all(0 <= a <= 1 for r in results.values() for a in r["accuracy"])
    assert "FGSM 33 dB" in results and "5-bit weights" in results


def test_geometry_runs_skip_the_gradient_attacks(trained):
    results = evaluate_run(trained / "geo", SMALL, progress=False)["results"]
    assert not any(name.startswith(("FGSM", "PGD")) for name in results)
    assert "noise 20 dB" in results and "5-bit weights" in results


def test_the_command_evaluates_runs_and_names_bad_settings(trained, capsys):
    assert main(["robustness", str(trained / "ce"), "--images", "40", "--draws", "1", "--no-progress"]) == 0
    assert "clean" in capsys.readouterr().out
    assert main(["robustness", str(trained / "ce"), "--pgd-eps", "-1"]) == 2
    assert "--pgd-eps" in capsys.readouterr().err
    assert main(["robustness", str(trained / "ce"), "--snrs-db", "20,x"]) == 2
    assert "--snrs-db" in capsys.readouterr().err


def test_a_damaged_or_empty_run_is_refused_by_name(trained, tmp_path):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(trained / "ce", damaged)
    folder = damaged / (damaged / "latest").read_text().strip()
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_classifier(damaged, "cpu")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_classifier(tmp_path / "nothing", "cpu")
