import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from codecs_helpers import dense, random_shared
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import fuzz_examples
from latentops.codecs import CorruptedFileError
from latentops.codecs.container import load_file, save_file
from latentops.codecs.formats import FORMATS, encode


def sample_entries(gen):
    s = random_shared(gen, (12, 40), 8, 0.2, laplace=True)
    entries = {f"layer.{name}": encode(s, name) for name in FORMATS}
    entries["layer.bias"] = torch.randn(12, generator=gen)
    entries["bn.count"] = torch.tensor(7)
    return s, entries


def test_round_trip(gen, tmp_path):
    s, entries = sample_entries(gen)
    path = tmp_path / "model.lt"
    save_file(entries, path, {"model": "mlp", "accuracy": 0.98})
    loaded, metadata = load_file(path)
    assert metadata == {"model": "mlp", "accuracy": 0.98}
    assert set(loaded) == set(entries)
    for name, value in entries.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(loaded[name], value)
        else:
            assert loaded[name].format == value.format and loaded[name].meta == value.meta
            assert torch.equal(loaded[name].decode().view(torch.int32), dense(s).view(torch.int32))
    assert os.listdir(tmp_path) == ["model.lt"]  # no temporary file left


def test_save_arguments(gen, tmp_path):
    with pytest.raises(TypeError, match="entry 'x'"):
        save_file({"x": 3}, tmp_path / "a.lt")
    _, entries = sample_entries(gen)
    with pytest.raises(ValueError, match="taken"):
        save_file({"m": entries["layer.ham"], "m/words": torch.zeros(1)}, tmp_path / "a.lt")
    assert not list(tmp_path.iterdir())


def rewrite_header(path, edit):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    specs = json.loads(data[8 : 8 + n])
    edit(specs)
    header = json.dumps(specs).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + data[8 + n :])


def edit_latentops(f):
    def edit(specs):
        header = json.loads(specs["__metadata__"]["latentops"])
        f(header)
        specs["__metadata__"]["latentops"] = json.dumps(header)
        # a hostile writer recomputes the header's checksum, to reach the checks behind it
        specs["__metadata__"]["latentops_sha256"] = hashlib.sha256(json.dumps(header).encode()).hexdigest()

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (edit_latentops(lambda h: h.update(version=99)), "unknown version"),
        (edit_latentops(lambda h: h["entries"]["layer.ham"].update(format="zip")), "unknown format"),
        (edit_latentops(lambda h: h["entries"]["layer.csc"].update(shape=[10**12, 10**12])), "layer.csc"),
        (lambda s: s["layer.sham/words"].update(shape=[10**15]), "layer.sham/words"),
        (lambda s: s["layer.bias"].update(dtype="Q7"), "unknown dtype"),
        (lambda s: s.pop("__metadata__"), "not a latentops file"),
    ],
)
def test_hostile_headers(gen, tmp_path, edit, message):
    _, entries = sample_entries(gen)
    path = tmp_path / "model.lt"
    save_file(entries, path)
    rewrite_header(path, edit)
    with pytest.raises(CorruptedFileError, match=message):
        load_file(path)


def test_version_1_files_still_load(gen, tmp_path):
    """Version 1 named each part's tensor and kept its whole SHA-256; version 2 keeps neither."""
    from safetensors.torch import load as safetensors_load

    from latentops.codecs.container import _sha256

    _, entries = sample_entries(gen)
    path = tmp_path / "model.lt"
    save_file(entries, path)
    stored = safetensors_load(path.read_bytes())

    def reference(key: str) -> dict:
        return {"tensor": key, "sha256": _sha256(stored[key])}

    def to_version_1(header):
        header["version"] = 1
        for name, entry in header["entries"].items():
            if entry["kind"] == "tensor":
                entry.update(reference(name))
            else:
                entry["parts"] = {part: reference(f"{name}/{part}") for part in entry["parts"]}

    rewrite_header(path, edit_latentops(to_version_1))
    loaded, _ = load_file(path)
    for name, value in entries.items():
        got = loaded[name]
        assert torch.equal(got, value) if isinstance(value, torch.Tensor) else torch.equal(got.decode(), value.decode())
    # a version 1 digest is the whole SHA-256: a version 2 one in a version 1 file is refused
    rewrite_header(
        path, edit_latentops(lambda h: h["entries"]["layer.bias"].update(sha256=_sha256(stored["layer.bias"])[:32]))
    )
    with pytest.raises(CorruptedFileError, match=r"layer\.bias"):
        load_file(path)


def test_truncated_and_checksum(gen, tmp_path):
    _, entries = sample_entries(gen)
    path = tmp_path / "model.lt"
    save_file(entries, path)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(CorruptedFileError, match=r"model\.lt"):
        load_file(path)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CorruptedFileError, match="checksum"):
        load_file(path)
    path.write_bytes(b"{}")
    with pytest.raises(CorruptedFileError):
        load_file(path)


LOADER = textwrap.dedent(
    """
    import sys, torch
    from latentops.codecs import CorruptedFileError
    from latentops.codecs.container import load_file
    good, _ = load_file(sys.argv[1])
    for path in sys.argv[2:]:
        try:
            loaded, _ = load_file(path)
        except CorruptedFileError:
            print("refused", flush=True)
            continue
        same = set(loaded) == set(good) and all(
            torch.equal(*(v if isinstance(v, torch.Tensor) else v.decode() for v in (loaded[k], good[k])))
            for k in good
        )
        print("ok" if same else "WRONG " + path, flush=True)
    """
)


@settings(max_examples=fuzz_examples(2))
@given(data=st.data())
def test_fuzz_in_a_subprocess(tmp_path_factory, data):
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    _, entries = sample_entries(gen)
    folder = tmp_path_factory.mktemp("fuzz")
    original = folder / "good.lt"
    save_file(entries, original)
    raw = original.read_bytes()
    header_end = 8 + int.from_bytes(raw[:8], "little")
    paths = []
    for i in range(48):
        mutated = bytearray(raw)
        kind = data.draw(st.sampled_from(["flip", "flip_data", "truncate", "length", "shape"]))
        if kind == "flip":
            for _ in range(data.draw(st.integers(1, 4))):
                bit = data.draw(st.integers(0, 8 * len(raw) - 1))
                mutated[bit // 8] ^= 1 << (bit % 8)
        elif kind == "flip_data":
            bit = data.draw(st.integers(8 * header_end, 8 * len(raw) - 1))
            mutated[bit // 8] ^= 1 << (bit % 8)
        elif kind == "truncate":
            mutated = mutated[: data.draw(st.integers(0, len(raw) - 1))]
        elif kind == "length":
            mutated[:8] = data.draw(st.sampled_from([2**63 - 1, 2**40, header_end, 0])).to_bytes(8, "little")
        else:  # a huge number where the header declares a size
            text = mutated[8:header_end].decode()
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            at = data.draw(st.sampled_from(digits))
            text = text[:at] + "99999999999" + text[at:]
            mutated = bytearray(len(text.encode()).to_bytes(8, "little") + text.encode() + raw[header_end:])
        path = folder / f"{i}.lt"
        path.write_bytes(bytes(mutated))
        paths.append(str(path))
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(original), *paths], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = result.stdout.split("\n")[:-1]
    assert len(outcomes) == len(paths) and all(o in ("ok", "refused") for o in outcomes), outcomes
