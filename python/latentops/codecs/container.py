"""The file of a compressed model: CompressedMatrix entries (any format of formats.FORMATS) and plain
tensors (biases, batch-norm statistics), in one safetensors file. No pickle.

Layout: a matrix entry `name` stores each part as the tensor "name/part"; a plain tensor is stored
under its own name. The safetensors header's __metadata__ holds one key, "latentops", whose value is
JSON: {"version": 2, "metadata": <the caller's dict>, "entries": {name: {"kind": "matrix", "format",
"shape", "meta", "parts": {part: digest}} or {"kind": "tensor", "digest": digest}}}. A digest is the
first 128 bits of the SHA-256 of the stored tensor's bytes, in hex: plenty to catch corruption, and
half the header of a small model's file (version 1, which this reader still takes, spelled out each
tensor's name and its whole SHA-256: 150 header bytes a tensor, 18 KB of a 52 KB conv net's file).
"latentops_sha256" is the whole SHA-256 of the JSON itself.

save_file writes atomically (a temporary file in the same folder, fsync, os.replace), so a crash
never leaves half a file under the name. load_file returns (entries, metadata); it reads the file
once, checks the safetensors header itself (sizes against the file's length, before any tensor is
built), then every checksum, then validates every matrix (from_parts). Anything wrong is a
CorruptedFileError naming the path, the entry or tensor, and what is wrong.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from latentops.codecs.errors import CorruptedFileError
from latentops.codecs.formats import FORMATS
from latentops.codecs.matrix import CompressedMatrix

VERSION = 2
READABLE_VERSIONS = (1, 2)
DIGEST_CHARS = {1: 64, 2: 32}  # hex digits of a tensor's SHA-256 each version keeps
KEY = "latentops"
CHECKSUM_KEY = "latentops_sha256"  # of the JSON of KEY, so a flipped entry name is caught
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
ITEM_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def save_file(
    matrices: dict[str, CompressedMatrix | torch.Tensor], path: str | os.PathLike, metadata: dict | None = None
) -> None:
    """Write `matrices` (name -> CompressedMatrix or tensor) and `metadata` (a JSON-serializable
    dict) to `path`, atomically."""
    if not isinstance(matrices, dict):
        raise TypeError(f"matrices must be a dict of name -> CompressedMatrix or tensor, got {type(matrices).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    entries = {}

    def put(key: str, t: torch.Tensor, entry: str) -> str:
        if key in tensors:
            raise ValueError(f"entry {entry!r}: its tensor name {key!r} is taken by another entry")
        tensors[key] = t.detach().cpu().contiguous().clone()
        return _sha256(tensors[key])[: DIGEST_CHARS[VERSION]]

    for name, value in matrices.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"matrices' names must be non-empty str, got {name!r}")
        if isinstance(value, CompressedMatrix):
            if value.format not in FORMATS:
                raise ValueError(f"entry {name!r}: unknown format {value.format!r}; valid: {', '.join(FORMATS)}")
            parts = {part: put(f"{name}/{part}", t, name) for part, t in value.parts.items()}
            entries[name] = dict(
                kind="matrix", format=value.format, shape=list(value.shape), meta=value.meta, parts=parts
            )
        elif isinstance(value, torch.Tensor):
            entries[name] = dict(kind="tensor", digest=put(name, value, name))
        else:
            raise TypeError(f"entry {name!r} must be a CompressedMatrix or a tensor, got {type(value).__name__}")
    header = json.dumps(dict(version=VERSION, metadata=metadata or {}, entries=entries))
    data = safetensors_save(tensors, metadata={KEY: header, CHECKSUM_KEY: hashlib.sha256(header.encode()).hexdigest()})
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_file(path: str | os.PathLike) -> tuple[dict[str, CompressedMatrix | torch.Tensor], dict]:
    """(entries: name -> CompressedMatrix or tensor, metadata) of a file of save_file."""
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _load(data)
    except CorruptedFileError as error:
        raise CorruptedFileError(f"{path}: {error}") from None


def _load(data: bytes):
    header = _check_header(data)
    try:
        tensors = safetensors_load(data)
    except Exception as error:  # safetensors' own errors, whatever their type
        raise CorruptedFileError(f"safetensors could not read the file: {error}") from None
    version = header.get("version")
    if version not in READABLE_VERSIONS:
        raise CorruptedFileError(f"unknown version {version!r}, this reader knows {READABLE_VERSIONS}")
    metadata, entries = header.get("metadata"), header.get("entries")
    if not isinstance(metadata, dict) or not isinstance(entries, dict):
        raise CorruptedFileError("the header's metadata and entries must be JSON objects")
    claimed = set()

    def take(name: str, spec, key: str) -> torch.Tensor:
        """The tensor `spec` refers to (version 1: {"tensor", "sha256"}; 2: its digest, the tensor
        named `key`), its checksum verified."""
        if version == 1:
            if not isinstance(spec, dict) or not isinstance(spec.get("tensor"), str):
                raise CorruptedFileError(f"entry {name!r}: a tensor reference must be an object with a 'tensor' name")
            key, spec = spec["tensor"], spec.get("sha256")
        if key not in tensors or key in claimed:
            raise CorruptedFileError(f"entry {name!r}: tensor {key!r} is missing or claimed twice")
        claimed.add(key)
        if not isinstance(spec, str) or spec != _sha256(tensors[key])[: DIGEST_CHARS[version]]:
            raise CorruptedFileError(f"entry {name!r}: tensor {key!r} fails its checksum")
        return tensors[key]

    out = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise CorruptedFileError(f"entry {name!r}: must be a JSON object")
        if entry.get("kind") == "tensor":
            out[name] = take(name, entry if version == 1 else entry.get("digest"), name)
        elif entry.get("kind") == "matrix":
            out[name] = _matrix(name, entry, take)
        else:
            raise CorruptedFileError(f"entry {name!r}: unknown kind {entry.get('kind')!r}")
    if set(tensors) - claimed:
        raise CorruptedFileError(f"tensors {sorted(set(tensors) - claimed)[:5]} belong to no entry")
    return out, metadata


def _matrix(name: str, entry: dict, take) -> CompressedMatrix:
    format, shape, meta, parts = (entry.get(key) for key in ("format", "shape", "meta", "parts"))
    if format not in FORMATS:
        raise CorruptedFileError(f"entry {name!r}: unknown format {format!r}; valid: {', '.join(FORMATS)}")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_is_int(s) and s >= 0 for s in shape)):
        raise CorruptedFileError(f"entry {name!r}: shape {shape!r} must be two non-negative integers")
    if not (isinstance(meta, dict) and all(_is_int(v) for v in meta.values())):
        raise CorruptedFileError(f"entry {name!r}: meta {meta!r} must map names to integers")
    if not isinstance(parts, dict):
        raise CorruptedFileError(f"entry {name!r}: parts must be a JSON object")
    tensors = {part: take(name, spec, f"{name}/{part}") for part, spec in parts.items()}
    try:
        return FORMATS[format].from_parts(tuple(shape), tensors, meta)
    except CorruptedFileError as error:
        raise CorruptedFileError(f"entry {name!r}: {error}") from None
    except Exception as error:  # a validator meeting what it did not foresee is still a bad file
        raise CorruptedFileError(f"entry {name!r}: {type(error).__name__}: {error}") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(data: bytes) -> dict:
    """The latentops header, after the safetensors tensor specs are checked against the file's length:
    every tensor's bytes are its shape's, within the data, in order and without overlap."""
    if len(data) < 8:
        raise CorruptedFileError(f"{len(data)} bytes, shorter than the safetensors header length")
    n = int.from_bytes(data[:8], "little")
    if n > min(MAX_HEADER_BYTES, len(data) - 8):
        raise CorruptedFileError(f"the header declares {n} bytes, the file has {len(data) - 8} after the length")
    try:
        specs = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CorruptedFileError(f"the safetensors header is no JSON: {error}") from None
    if not isinstance(specs, dict):
        raise CorruptedFileError("the safetensors header is no JSON object")
    file_metadata = specs.pop("__metadata__", None)
    if not isinstance(file_metadata, dict) or not isinstance(file_metadata.get(KEY), str):
        raise CorruptedFileError(f"no {KEY!r} entry in the header's __metadata__: not a latentops file")
    data_bytes = len(data) - 8 - n
    spans = []
    for key, spec in specs.items():
        if not isinstance(spec, dict):
            raise CorruptedFileError(f"tensor {key!r}: its header entry is no JSON object")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if dtype not in ITEM_SIZES:
            raise CorruptedFileError(f"tensor {key!r}: unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(_is_int(s) and s >= 0 for s in shape)):
            raise CorruptedFileError(f"tensor {key!r}: shape {shape!r} must be non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise CorruptedFileError(f"tensor {key!r}: data_offsets {offsets!r} must be two integers")
        begin, end = offsets
        size = math.prod(shape) * ITEM_SIZES[dtype]
        if not 0 <= begin <= end <= data_bytes or end - begin != size:
            raise CorruptedFileError(
                f"tensor {key!r}: {dtype} {shape} needs {size} bytes, its offsets [{begin}, {end}) "
                f"do not fit that within the {data_bytes} bytes of data"
            )
        spans.append((begin, end, key))
    spans.sort()
    for (_, end, key), (begin, _, other) in itertools.pairwise(spans):
        if begin < end:
            raise CorruptedFileError(f"tensors {key!r} and {other!r} overlap")
    if file_metadata.get(CHECKSUM_KEY) != hashlib.sha256(file_metadata[KEY].encode()).hexdigest():
        raise CorruptedFileError(f"the {KEY!r} header fails its checksum")
    try:
        header = json.loads(file_metadata[KEY])
    except ValueError as error:
        raise CorruptedFileError(f"the {KEY!r} header is no JSON: {error}") from None
    if not isinstance(header, dict):
        raise CorruptedFileError(f"the {KEY!r} header is no JSON object")
    return header
