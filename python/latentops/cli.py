"""The `latentops` command: a subcommand per training task (`latentops train ...`, `latentops classify
...`), `latentops robustness RUN_DIR...` and `latentops report RUN_DIR...`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing


def _scalar_type(hint):
    """int for `int` and `int | None`; None (argparse's str) for strings."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    return None if kinds[0] is str else kinds[0]


def add_options(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One option per field of config_class, from its type, default and option() metadata."""
    from latentops.pipelines.options import flag

    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        meta, name = field.metadata, field.name
        if hints[name] is bool:  # a switch away from the default
            option = "--no-" + flag(name)[2:] if field.default else flag(name)
            parser.add_argument(
                option, dest=name, action="store_false" if field.default else "store_true", help=meta.get("help")
            )
            continue
        settings = {"help": meta.get("help")}
        if meta.get("positional"):
            parser.add_argument(name, metavar=meta.get("metavar"), help=meta.get("help"))
            continue
        if _scalar_type(hints[name]) is not None:
            settings["type"] = _scalar_type(hints[name])
        if meta.get("choices") is not None:
            settings["choices"] = list(meta["choices"])
        if meta.get("metavar") is not None:
            settings["metavar"] = meta["metavar"]
        if field.default is dataclasses.MISSING:
            settings["required"] = True
        else:
            settings["default"] = field.default
        parser.add_argument(flag(name), **settings)


def _parser() -> argparse.ArgumentParser:
    from latentops.pipelines.tasks import TASKS

    parser = argparse.ArgumentParser(prog="latentops", description=__doc__)
    parser.add_argument(
        "-V", "--version", action=_VersionAction, help="print the version and what this build runs here"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for task in TASKS.values():
        command = commands.add_parser(task.command, help=task.help, description=task.description)
        add_options(command, task.config_class)

    report = commands.add_parser(
        "report",
        help="tabulate finished runs side by side",
        description="Markdown table (printed and written to OUT/report.md) "
        "and a combined PNG (OUT/report.png) of the runs.",
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument(
        "--out", default=None, help="folder for report.md / report.png (default: the first RUN_DIR's parent)"
    )
    robustness = commands.add_parser(
        "robustness",
        help="evaluate classifier runs under noise, FGSM, PGD, test-time dropout and k-bit weights",
        description="The Laplacian-networks robustness suite on each classifier RUN_DIR (its latest "
        "checkpoint); writes RUN_DIR/robustness.json and robustness.png. Defaults: the authors' settings.",
    )
    from latentops.pipelines.classifiers import robustness_suite

    robustness_suite.add_arguments(robustness)
    return parser


# The modules of the `pipelines` extra (pyproject.toml), which the commands import and the ops do not.
PIPELINES_EXTRA = ("matplotlib", "scipy", "sklearn")


def version() -> str:
    """The installed version and what this build runs here: for `latentops --version` and bug reports."""
    import torch

    import latentops
    from latentops.native import library

    if library is None:
        native = "no compiled extension (the torch and triton backends only)"
    else:
        cpu = "C++ CPU kernels" if library.cpu_supported else "no C++ CPU kernels for this processor"
        cuda = f"CUDA kernels for {library.cuda_architectures}" if library.has_cuda else "no CUDA kernels"
        native = f"{cpu}, {cuda}"
    return (
        f"latentops {latentops.__version__} (torch {torch.__version__}; {native}; "
        f"backends here: {', '.join(latentops.backends())})"
    )


class _VersionAction(argparse.Action):
    """--version: like argparse's, with the text computed only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    """Exit status 0, or 2 with one line on stderr naming the argument or file at fault (a bad
    option, a corrupted or missing file of a run, a run folder in use): a traceback is for bugs."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-V"]):  # answered without the pipelines, which need their extra
        print(version())
        return 0
    try:
        from latentops.pipelines.run_folder import RunFolderBusy
        from latentops.pipelines.tasks import TASKS

        parser = _parser()
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] not in PIPELINES_EXTRA:
            raise
        print(
            f"latentops: error: the commands need the pipelines extra (pip install 'latentops[pipelines]'): {error}",
            file=sys.stderr,
        )
        return 2
    args = parser.parse_args(argv)
    try:
        tasks = {task.command: task for task in TASKS.values()}
        if args.command in tasks:
            task = tasks[args.command]
            names = [f.name for f in dataclasses.fields(task.config_class)]
            summary = task.main(task.config_class(**{name: getattr(args, name) for name in names}))
            if summary:
                print(json.dumps(summary, indent=2))
        elif args.command == "robustness":
            from latentops.pipelines.classifiers import robustness_suite

            robustness_suite.command(args)
        else:
            from latentops.pipelines.report import write_report

            text, md_path, png_path = write_report(args.run_dirs, args.out)
            print(text)
            print(f"wrote {md_path} and {png_path}")
    # OSError: its message names the file (a full disk, a folder we may not write to).
    except (ValueError, OSError, RunFolderBusy) as error:
        print(f"latentops {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
