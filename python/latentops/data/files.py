"""Finding a dataset's files in --data-dir. Nothing is downloaded: a missing file is an error that
names every file expected and where to put it."""

from __future__ import annotations

from pathlib import Path


def find_files(data_dir, dataset: str, subdir: str, names: list[list[str]], source: str) -> list[Path]:
    """The path of each wanted file: for each entry of `names`, the first of its alternatives
    (e.g. a gzipped and a raw form) found in data_dir/subdir or data_dir itself."""
    if data_dir is None:
        raise FileNotFoundError(
            f"dataset {dataset!r} reads local files: pass --data-dir (data_dir) "
            f"with {_listing(names)} in DATA_DIR/{subdir}/ or DATA_DIR/ "
            f"(from {source})"
        )
    root = Path(data_dir)
    folders = [root / subdir, root]
    found, missing = [], []
    for alternatives in names:
        path = next((folder / name for folder in folders for name in alternatives if (folder / name).is_file()), None)
        if path is None:
            missing.append(alternatives)
        found.append(path)
    if missing:
        raise FileNotFoundError(
            f"dataset {dataset!r}: missing {_listing(missing)} under "
            f"--data-dir {str(root)!r}; put the files in {str(root / subdir)!r} "
            f"or {str(root)!r} (from {source}; nothing is downloaded)"
        )
    return found


def _listing(names: list[list[str]]) -> str:
    return ", ".join(" or ".join(alternatives) for alternatives in names)
