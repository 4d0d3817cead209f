"""The autoencoder zoo through the runner: outputs, exact resume after an interruption, refusals."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from latentops.pipelines import train
from latentops.pipelines.report import markdown_table
from latentops.pipelines.runner import Runner

from .tiny import tiny_config


def _final_state(run_dir):
    folder = run_dir / (run_dir / "latest").read_text().strip()
    return load_file(str(folder / "model.safetensors")), torch.load(folder / "state.pt", weights_only=True)


def _losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]


def test_run_writes_its_outputs(tmp_path):
    summary = train(tiny_config(tmp_path / "run", downstream=True))
    run = tmp_path / "run"
    for name in (
        "metrics.json",
        "metrics.jsonl",
        "config.json",
        "interpolation.png",
        "loss.png",
        "interpolation-frames.png",
        "latest",
    ):
        assert (run / name).is_file(), name
    assert json.loads((run / "metrics.json").read_text()) == summary
    assert summary["steps"] == 6
    for key in ("mean_distance", "smoothness", "test_mse", "probe_accuracy", "clustering_accuracy"):
        assert isinstance(summary[key], float), key
    assert isinstance(summary["degenerate_pairs"], int)
    definitions = ("interpolation_pairs", "mean_distance_definition", "smoothness_degenerate")
    assert [summary[key] for key in definitions] == ["random", "acai", "acai"]  # ACAI's, by default
    table = markdown_table([{"dir": run, "summary": summary}])
    assert "| Mean Distance defined as | acai |" in table and "| Interpolation pairs | random |" in table
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("eval") == 2 and kinds.count("train") == 6
    # ACAI's Table 1: the median of the last (up to 20) evaluations, here both.
    evals = [r for r in records if r["kind"] == "eval"]
    assert summary["interpolation_evaluations"] == 2
    for key in ("mean_distance", "smoothness"):
        assert summary[key] == pytest.approx((evals[0][key] + evals[1][key]) / 2)


@pytest.mark.parametrize("model", ["acai", "vqvae"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, model):
    # acai: two optimizers, random α; vqvae: k-means init, EMA buffers, dead-code draws.
    # Checkpoints at steps 2 and 4; the interruption hits step 5.
    train(tiny_config(tmp_path / "straight", model))

    original = Runner._train_step

    def crash_at_step_5(self):
        if self.step == 4:
            raise KeyboardInterrupt("simulated interruption")
        return original(self)

    monkeypatch.setattr(Runner, "_train_step", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "resumed", model))
    monkeypatch.setattr(Runner, "_train_step", original)
    assert (tmp_path / "resumed" / "latest").read_text().strip() == "checkpoint-4"
    train(tiny_config(tmp_path / "resumed", model, resume=True))

    (weights_a, state_a), (weights_b, state_b) = (_final_state(tmp_path / d) for d in ("straight", "resumed"))
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    for group, opt_a in state_a["optimizers"].items():
        for index, slots in opt_a["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, state_b["optimizers"][group]["state"][index][slot]), (group, slot)
    assert torch.equal(state_a["rng"][0]["torch"], state_b["rng"][0]["torch"])
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")


def test_resume_can_extend_a_finished_run(tmp_path):
    train(tiny_config(tmp_path / "a", steps=4))
    summary = train(tiny_config(tmp_path / "a", steps=6, resume=True))
    assert summary["steps"] == 6


def test_an_existing_run_is_not_overwritten(tmp_path):
    train(tiny_config(tmp_path / "a", steps=2))
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(tmp_path / "a", steps=2))


def test_resume_with_another_setting_names_it(tmp_path):
    train(tiny_config(tmp_path / "a", steps=2))
    with pytest.raises(ValueError, match="--lr"):
        train(tiny_config(tmp_path / "a", steps=4, lr=5e-4, resume=True))


@pytest.mark.parametrize(
    "field, value",
    [
        ("model", "nope"),
        ("dataset", "imagenet"),
        ("steps", 0),
        ("batch_size", -1),
        ("lr", 0.0),
        ("backend", "cuda"),
        ("eval_every", 0),
    ],
)
def test_bad_settings_name_the_argument(tmp_path, field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ValueError, match=flag):
        train(tiny_config(tmp_path / "a", **{field: value}))


def test_torch_backend_runs(tmp_path):
    summary = train(tiny_config(tmp_path / "a", model="softvq", steps=2, eval_every=2, backend="torch"))
    assert summary["backend"] == "torch"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("codebook_size=8,nope=1", "vqvae has no option 'nope'; its options .*codebook_size=512"),
        ("beta=high", "beta: 'high' is not float"),
        ("beta", "must be KEY=VALUE"),
    ],
)
def test_a_bad_model_option_is_named(tmp_path, text, message):
    with pytest.raises(ValueError, match=f"--model-option.*{message}"):
        train(tiny_config(tmp_path / "a", model="vqvae", model_option=text))


def test_model_options_reach_the_model_and_the_summary(tmp_path):
    config = tiny_config(tmp_path / "a", model="vqvae", model_option="codebook_size=8, beta=0.5, kmeans_init=off")
    summary = train(config)
    assert summary["model_options"] == {"codebook_size": 8, "beta": 0.5, "kmeans_init": False}
    assert summary["latent_map"] == "4×4×2"  # VQ-VAE's on lines, as ACAI's
    state = load_file(str(next((tmp_path / "a").glob("checkpoint-*/model.safetensors"))))
    assert next(t for name, t in state.items() if "codebook" in name).shape[0] == 8


@pytest.mark.parametrize(
    ("model", "latent_shape"),
    [("baseline", (2, 2, 2)), ("acai", (2, 2, 2)), ("vqvae", (2, 4, 4)), ("vqvae-acai", (2, 4, 4))],
)
def test_acai_latent_map_on_lines(tmp_path, model, latent_shape):
    from latentops.pipelines.autoencoders.task import AutoencoderTask

    def built(**overrides):
        task = AutoencoderTask(tiny_config(tmp_path / "a", model=model, **overrides))
        task.build(torch.device("cpu"))
        return task.model.latent_shape

    assert built() == latent_shape
    assert built(scales=1) == (2, 16, 16)
    assert built(dataset="digits") == (2, 4, 4)  # 8×8 images: ACAI's 4×4 map


def test_the_paper_soft_vq_trains_and_is_probed_on_z(tmp_path):
    config = tiny_config(tmp_path / "a", model="softvq-paper", steps=2, eval_every=2, downstream=True)
    summary = train(dataclasses.replace(config, model_option="code_dim=6,codebook_size=9"))
    assert summary["model_options"] == {"code_dim": 6, "codebook_size": 9}
    for key in ("mean_distance", "smoothness", "probe_accuracy", "clustering_accuracy"):
        assert isinstance(summary[key], float), key


def test_the_online_classifier_learns_from_stopped_latents_only(tmp_path):
    from latentops.pipelines.autoencoders.task import AutoencoderTask

    task = AutoencoderTask(tiny_config(tmp_path / "a"))
    training = task.build(torch.device("cpu"))
    assert set(training.groups) == {"autoencoder", "classifier"}
    assert training.groups["classifier"] == list(task.model.online_classifier.parameters())
    losses = task.losses(task.batch(0, 0, 1))
    encoder = list(task.model.encoder.parameters())
    grads = torch.autograd.grad(losses.per_group["classifier"], encoder, allow_unused=True)
    assert all(g is None for g in grads)  # ACAI's tf.stop_gradient: the encoder learns nothing from it
    summary = train(tiny_config(tmp_path / "b"))
    assert summary["classifier_definition"] == "online" and 0.0 <= summary["probe_accuracy"] <= 1.0
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert all("loss/classifier" in r for r in records if r["kind"] == "train")
    assert all("probe_accuracy" in r for r in records if r["kind"] == "eval")
    lbfgs = train(tiny_config(tmp_path / "c", classifier="lbfgs", downstream=True))
    assert lbfgs["classifier_definition"] == "lbfgs" and 0.0 <= lbfgs["probe_accuracy"] <= 1.0
