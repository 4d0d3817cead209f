"""`latentops report` over classifier runs with several seeds: medians and quartiles per variant,
paired differences with the Wilcoxon signed-rank test, box plots, accuracy against SNR and the
per-layer smoothness curve; one seed per variant keeps the column-per-run table."""

import json

import numpy as np
from scipy.stats import wilcoxon

from latentops.pipelines.report import write_report


def _fake_run(folder, variant, seed, clean, noisy, dataset="digits"):
    folder.mkdir(parents=True)
    summary = {
        "task": "classifiers", "arch": "preact-small", "dataset": dataset, "variant": variant, "steps": 10,
        "test_accuracy": clean, "smoothness_per_layer": [1.0 + seed, 2.0, 3.0],
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(summary))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    results = {"clean": {"accuracy": [clean]}, "noise 10 dB": {"accuracy": [noisy, noisy + 0.02]}}
    (folder / "robustness.json").write_text(json.dumps({"results": results}))
    return folder


def test_seeds_are_summarized_and_paired(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.8, 0.9, 8)
    gain = rng.uniform(0.01, 0.06, 8)
    runs = [_fake_run(tmp_path / f"V-{s}", "V", s, base[s], 0.5) for s in range(8)]
    runs += [_fake_run(tmp_path / f"R-{s}", "R", s, base[s] - 0.01, 0.5 + gain[s]) for s in range(8)]
    text, _, _ = write_report(runs, tmp_path / "report")
    assert "| Metric | V | R |" in text
    v_median = np.percentile(base * 100, 50)
    assert f"{v_median:.1f} [" in text
    # R's noise accuracy is V's + gain, averaged over the two draws: paired median = median gain.
    p = wilcoxon(gain * 100).pvalue
    assert f"{np.median(gain) * 100:+.1f} (p = {p:.3g}, n = 8)" in text
    assert "-1.0 (p = " in text  # clean: R is one point below V for every seed
    for name in ("robustness-box", "accuracy-vs-snr", "smoothness-per-layer"):
        assert (tmp_path / "report" / f"preact-small-digits-{name}.png").is_file()


def test_one_seed_per_variant_keeps_a_column_per_run(tmp_path):
    runs = [_fake_run(tmp_path / v, v, 0, 0.9, 0.5) for v in ("V", "PR")]
    text, _, _ = write_report(runs, tmp_path)
    assert "preact-small V" in text and "preact-small PR" in text and "Wilcoxon" not in text


def test_cifar10_runs_get_the_authors_numbers_beside_them(tmp_path):
    runs = [_fake_run(tmp_path / f"V-{s}", "V", s, 0.88, 0.3, dataset="cifar10") for s in range(2)]
    text, _, _ = write_report(runs, tmp_path / "out")
    assert "The authors' medians on CIFAR-10" in text and "| noise σ=0.1 | 34.9 | 33.7 | 43.6 | 50.0 |" in text
