"""`latentops compress`: a trained run pruned, shared, fine-tuned, encoded and evaluated from its
file; pruned weights stay 0, the codebook gradient is the grouped sum, the file reloads to the same
predictions, ψ is the file's bytes over the dense float32 bytes, a corrupted file is refused by name."""

import dataclasses
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from tests.conftest import fuzz_examples
from tests.pipelines.tiny import tiny_config

from latentops.cli import main
from latentops.codecs import CorruptedFileError, prune_magnitude
from latentops.nn import CompressedConv2d, CompressedLinear, SharedWeightLinear
from latentops.pipelines import checkpoint, run
from latentops.pipelines.classifiers import ClassifierTask, ClassifyConfig
from latentops.pipelines.compression import CompressConfig, compress, load_compressed, run_grid
from latentops.pipelines.compression.config import parse_list, parse_per_layer
from latentops.pipelines.compression.stages import ShareStage


def _source(out, **overrides):
    settings = dict(
        out=str(out), arch="mlp", width=24, train_per_class=5, steps=10, batch_size=10, device="cpu",
        eval_every=10, eval_batch=40, progress=False,
    )  # fmt: skip
    settings.update(overrides)
    run(ClassifierTask, ClassifyConfig(**settings))
    return out


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    return _source(tmp_path_factory.mktemp("mlp") / "run")


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    return _source(tmp_path_factory.mktemp("conv") / "run", arch="preact-small", width=8, steps=4)


def _config(source, out, **overrides) -> CompressConfig:
    settings = dict(
        run=str(source), out=str(out), prune=0.8, k=4, steps=4, batch_size=10, device="cpu", progress=False,
        eval_every=4,
    )  # fmt: skip
    settings.update(overrides)
    return CompressConfig(**settings)


@pytest.fixture(scope="module")
def compressed(mlp_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("compressed") / "c"
    return out, compress(_config(mlp_run, out))


def _weights(folder):
    return load_file(str(checkpoint.latest(folder) / checkpoint.MODEL))


def test_the_command_compresses_evaluates_and_reports(mlp_run, tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["compress", str(mlp_run), "--prune", "0.9", "--quantizer", "uq", "--k", "8", "--steps", "3"]
    assert main([*argv, "--batch-size", "10", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["task"] == "compression" and summary["quantizer"] == "uq" and summary["metric"] == "test_accuracy"
    assert [row["name"] for row in summary["layers"]] == ["hidden.0", "hidden.1", "head"]
    for row in summary["layers"]:
        assert row["format"] in row["bytes_per_format"] and row["bytes"] == min(row["bytes_per_format"].values())
        assert row["levels"] <= 8 and row["kept"] == round(0.1 * math.prod(row["shape"]))
        assert row["time_compressed"] > 0 and row["time_dense"] > 0
    assert "| hidden.1 | 24×24 |" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path)]) == 0
    assert "mlp uq p=0.9 k=8" in (tmp_path / "report.md").read_text()
    # The same compression with another seed: the report gives medians over seeds instead.
    assert main([*argv, "--seed", "1", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "c1")]) == 0
    assert main(["report", str(out), str(tmp_path / "c1"), "--out", str(tmp_path)]) == 0
    assert "| mlp uq p=0.9 k=8 | 2 |" in (tmp_path / "report.md").read_text()


def test_psi_is_the_files_bytes_over_the_dense_float32_bytes(compressed, mlp_run):
    out, summary = compressed
    trained = _weights(mlp_run)
    dense = 4 * sum(t.numel() for t in trained.values() if t.is_floating_point())
    assert summary["dense_bytes"] == dense
    assert summary["file_bytes"] == (out / "model.lops").stat().st_size
    assert summary["psi"] == pytest.approx(summary["file_bytes"] / dense)
    assert summary["ratio"] == pytest.approx(1 / summary["psi"])


def test_pruned_weights_stay_zero_through_both_fine_tunings(compressed, mlp_run):
    out, _ = compressed
    trained, pruned, shared = _weights(mlp_run), _weights(out / "prune"), _weights(out / "share")
    for name in ("hidden.0", "hidden.1", "head"):
        mask = prune_magnitude(trained[f"{name}.weight"], 0.8)
        after = pruned[f"{name}.weight"]
        assert torch.equal(after[~mask], torch.zeros_like(after[~mask]))
        assert not torch.equal(after[mask], trained[f"{name}.weight"][mask])  # the kept ones trained
        assert torch.equal(shared[f"{name}.mask"], mask)


def test_codebook_gradient_is_the_grouped_sum_in_the_share_stage(compressed, mlp_run):
    out, _ = compressed
    config = _config(mlp_run, out / "share", resume=True)
    stage = ShareStage(config)
    training = stage.build(torch.device("cpu"))
    layer = stage.model.get_submodule("hidden.1")
    assert isinstance(layer, SharedWeightLinear)
    dense = layer.weight.detach().clone().requires_grad_(True)
    x = torch.randn(7, layer.in_features)
    torch.nn.functional.linear(x, dense, layer.bias).square().sum().backward()
    layer(x).square().sum().backward()
    expected = torch.zeros_like(layer.codebook).index_add_(
        0, layer.codes[layer.mask].long(), dense.grad[layer.mask]
    )  # fmt: skip
    torch.testing.assert_close(layer.codebook.grad, expected, rtol=1e-5, atol=1e-6)
    assert any(p is layer.codebook for p in training.groups["classifier"])
    # it steps at --lr over its weights per codeword: the summed gradient at --lr moves it too far
    (group,) = [g for g in training.optimizers["classifier"].param_groups if g["params"][0] is layer.codebook]
    lr = config.lr if config.lr is not None else 0.1 / 10  # a tenth of the source's rate
    assert group["lr"] == pytest.approx(lr * layer.codebook.numel() / int(layer.mask.sum()))


def test_the_file_reloads_to_the_same_predictions(compressed, mlp_run):
    out, summary = compressed
    stage = ShareStage(_config(mlp_run, out / "share", resume=True))
    training = stage.build(torch.device("cpu"))
    found = checkpoint.latest(out / "share")
    checkpoint.load(found, training.model, training.optimizers, torch.device("cpu"), training.schedulers)
    task, model, metadata = load_compressed(out / "model.lops", torch.device("cpu"))
    assert isinstance(model.hidden[1], CompressedLinear) and metadata["task"] == "classifiers"
    images, _ = task.dataset.test_set()
    with torch.no_grad():
        expected, got = stage.model.eval()(images), model(images)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    labels = task.dataset.test_set()[1]
    assert summary["value"] == pytest.approx(float((got.argmax(1) == labels).float().mean()))
    paired = summary["paired_test"]  # McNemar's counts are the accuracy change, image by image
    assert paired["images"] == len(labels) and 0 <= paired["p_value"] <= 1
    change = (paired["only_compressed_right"] - paired["only_source_right"]) / paired["images"]
    assert summary["delta"] == pytest.approx(change, abs=1e-6)


def test_a_corrupted_file_is_refused_by_name(compressed, tmp_path):
    out, _ = compressed
    data = bytearray((out / "model.lops").read_bytes())
    for position in (len(data) - 5, 40):  # a weight byte; a header byte
        bad = bytearray(data)
        bad[position] ^= 0x10
        path = tmp_path / f"bad-{position}.lops"
        path.write_bytes(bytes(bad))
        with pytest.raises(CorruptedFileError, match=rf"bad-{position}\.lops"):
            load_compressed(path, torch.device("cpu"))
    (tmp_path / "short.lops").write_bytes(bytes(data[:100]))
    with pytest.raises(CorruptedFileError, match=r"short\.lops"):
        load_compressed(tmp_path / "short.lops", torch.device("cpu"))


def test_a_codecs_file_that_is_no_compressed_model_is_refused_by_name(compressed, tmp_path):
    from latentops.codecs import load_file, save_file

    out, _ = compressed
    entries, metadata = load_file(out / "model.lops")
    save_file(entries, tmp_path / "plain.lops")  # no metadata: not from compress
    with pytest.raises(CorruptedFileError, match=r"plain\.lops.*not a file of `latentops compress`"):
        load_compressed(tmp_path / "plain.lops", torch.device("cpu"))
    entries.pop("hidden.1.bias")
    save_file(entries, tmp_path / "short.lops", metadata)
    with pytest.raises(CorruptedFileError, match=r"short\.lops: layer 'hidden\.1': its bias is missing"):
        load_compressed(tmp_path / "short.lops", torch.device("cpu"))
    entries, _ = load_file(out / "model.lops")
    entries["hidden.0.bias"] = entries["hidden.0.bias"].double()  # load_state_dict would cast it back
    save_file(entries, tmp_path / "double.lops", metadata)
    with pytest.raises(CorruptedFileError, match=r"double\.lops: layer 'hidden\.0': its bias is torch\.float64"):
        load_compressed(tmp_path / "double.lops", torch.device("cpu"))
    entries, _ = load_file(out / "model.lops")
    entries["hidden.1.weight"] = entries["head.weight"]  # a matrix of another layer's shape
    save_file(entries, tmp_path / "swapped.lops", metadata)
    with pytest.raises(CorruptedFileError, match=r"swapped\.lops: layer 'hidden\.1': a \(10, 24\) matrix"):
        load_compressed(tmp_path / "swapped.lops", torch.device("cpu"))


def test_a_conv_net_globally_pruned_with_per_layer_overrides(conv_run, tmp_path):
    options = dict(scope="global", prune=0.7, per_layer="linear=/2", quantizer="ecsq", steps=2)
    summary = compress(_config(conv_run, tmp_path / "c", **options))
    rows = {row["name"]: row for row in summary["layers"]}
    assert rows["linear"]["k"] == 2 and rows["linear"]["levels"] <= 2
    assert {row["kind"] for row in rows.values()} == {"conv2d", "linear"}
    kept = sum(row["kept"] for row in rows.values()) / sum(math.prod(row["shape"]) for row in rows.values())
    assert kept == pytest.approx(0.3, abs=1e-3)  # one threshold over all layers
    _, model, _ = load_compressed(tmp_path / "c" / "model.lops", torch.device("cpu"))
    assert isinstance(model.conv1, CompressedConv2d)
    only_conv = compress(_config(conv_run, tmp_path / "conv", layers="conv", steps=1))
    assert {row["kind"] for row in only_conv["layers"]} == {"conv2d"}


def test_an_autoencoder_run_is_judged_by_its_reconstruction(tmp_path):
    run_dir = tmp_path / "ae"
    from latentops.pipelines.autoencoders import AutoencoderTask

    run(AutoencoderTask, tiny_config(run_dir, model="acai"))
    summary = compress(_config(run_dir, tmp_path / "c", steps=2, batch_size=8, prune=0.5))
    assert summary["metric"] == "test_mse" and summary["higher_is_better"] is False
    assert "test_mse" in summary["evaluation"] and summary["paired_test"] is None
    assert not any("critic" in row["name"] for row in summary["layers"])  # only the autoencoder's layers


def test_an_interrupted_compression_resumes(mlp_run, tmp_path, monkeypatch):
    original = ShareStage.batch

    def interrupted(self, step, rank, world):
        if step == 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, step, rank, world)

    monkeypatch.setattr(ShareStage, "batch", interrupted)
    config = _config(mlp_run, tmp_path / "c", checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        compress(config)
    monkeypatch.setattr(ShareStage, "batch", original)
    with pytest.raises(FileExistsError, match="--resume"):
        compress(config)
    resumed = compress(dataclasses.replace(config, resume=True))
    straight = compress(_config(mlp_run, tmp_path / "straight", checkpoint_every=2))
    assert resumed["value"] == straight["value"] and resumed["file_bytes"] == straight["file_bytes"]


def test_the_grid_shares_each_pruning_and_plots_every_quantizer(mlp_run, tmp_path):
    config = _config(mlp_run, tmp_path / "g", grid=True, grid_prune="0.5,0.9", grid_k="2,8", grid_quantizers="cws,pws")
    result = run_grid(config)
    assert result["points"] == 8
    assert sorted(p.name for p in (tmp_path / "g").glob("p*")) == ["p0.5", "p0.9"]
    assert len(list((tmp_path / "g").glob("p*/prune"))) == 2
    points = json.loads((tmp_path / "g" / "grid.json").read_text())
    assert {(p["prune"], p["k"], p["quantizer"]) for p in points} == {
        (p, k, q) for p in (0.5, 0.9) for k in (2, 8) for q in ("cws", "pws")
    }
    assert (tmp_path / "g" / "grid.png").stat().st_size > 0 and "| cws |" in (tmp_path / "g" / "grid.md").read_text()
    with pytest.raises(FileExistsError):
        run_grid(config)
    assert run_grid(dataclasses.replace(config, resume=True))["points"] == 8  # done points are read back
    with pytest.raises(ValueError, match="--lr"):  # but not those made with other settings
        run_grid(dataclasses.replace(config, resume=True, lr=0.5))


@pytest.mark.parametrize(
    "options, match",
    [
        (["--per-layer", "head"], "--per-layer"),
        (["--per-layer", "nope=0.5"], "--per-layer"),
        (["--layers", "nope"], "--layers"),
        (["--scope", "global", "--per-layer", "head=0.5"], "--per-layer"),
        (["--prune", "1.0"], "--prune"),
        (["--k", "0"], "--k"),
        (["--grid", "--grid-k", "2,2"], "--grid-k"),
    ],
)
def test_bad_options_are_named(mlp_run, tmp_path, capsys, options, match):
    argv = ["compress", str(mlp_run), *options, "--device", "cpu", "--no-progress", "--out", str(tmp_path / "c")]
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_a_folder_that_is_no_finished_run_is_named(compressed, mlp_run, tmp_path, capsys):
    out, _ = compressed
    for source, match in ((tmp_path, "no metrics.json"), (out, "task 'compression'")):
        assert main(["compress", str(source), "--device", "cpu", "--out", str(tmp_path / "c")]) == 2
        assert match in capsys.readouterr().err
    assert main(["compress", str(mlp_run), "--out", str(mlp_run)]) == 2
    assert "is RUN itself" in capsys.readouterr().err


def test_parseval_convs_are_left_dense():
    """ParsevalConv2d scales its weight in forward, which a shared or compressed layer would drop."""
    from latentops.models.classifiers import build_classifier
    from latentops.pipelines.compression.layers import plan_layers

    model = build_classifier("preact-small", (1, 8, 8), 10, parseval=True)
    plans = plan_layers(model, list(model.parameters()), _config("unused", "unused"))
    assert plans and all(type(model.get_submodule(name)) in (torch.nn.Linear, torch.nn.Conv2d) for name in plans)
    assert any(type(m).__name__ == "ParsevalConv2d" for m in model.modules())


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_.]{0,8}", fullmatch=True),
        st.tuples(st.one_of(st.none(), st.floats(0, 0.999)), st.one_of(st.none(), st.integers(1, 65536))).filter(
            lambda t: t != (None, None)
        ),
        max_size=4,
    )
)
@settings(max_examples=fuzz_examples(50))
def test_per_layer_overrides_round_trip(overrides):
    text = ",".join(
        f"{name}={'' if p is None else repr(p)}{'' if k is None else f'/{k}'}" for name, (p, k) in overrides.items()
    )
    assert parse_per_layer(text) == overrides


@given(st.lists(st.integers(1, 70000), min_size=1, max_size=5))
@settings(max_examples=fuzz_examples(50))
def test_grid_lists_accept_exactly_the_valid_values(values):
    text = ",".join(map(str, values))
    valid = all(v <= 65536 for v in values) and len(set(values)) == len(values)
    try:
        assert parse_list("--grid-k", text, int, lambda v: 1 <= v <= 65536) == values and valid
    except ValueError as error:
        assert not valid and "--grid-k" in str(error)
