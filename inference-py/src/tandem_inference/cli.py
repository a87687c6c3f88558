"""The `tandem-inference` command: `serve`, `build-models`, `build-minilm` and `init-model`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tandem_inference import __version__, logs
from tandem_inference.app import serve
from tandem_inference.autocomplete import init_model
from tandem_inference.errors import TandemError
from tandem_inference.settings import Settings, SettingsError

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("tandem_inference")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem-inference", description="Tandem's Python inference service (OIP v2)."
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="serve the model repository over OIP v2 (gRPC, NATS or both)"
    )
    Settings.add_arguments(serve)
    build = commands.add_parser(
        "build-models", help="train the digits MLP and write it for both backends"
    )
    Settings.add_arguments(build, only=("model_repository", "log_level"))
    build.add_argument("--force", action="store_true", help="rebuild even when the artifacts exist")
    minilm = commands.add_parser(
        "build-minilm",
        help="export all-MiniLM-L6-v2 from the pinned package for both backends, with its "
        "tokenizer",
    )
    Settings.add_arguments(minilm, only=("model_repository", "log_level"))
    minilm.add_argument(
        "--force", action="store_true", help="rebuild even when the artifacts exist"
    )
    init = commands.add_parser(
        "init-model",
        help="bring your own ONNX model: copy it to <repository>/NAME/1/model.onnx and write "
        "the config.toml read from its graph, for review",
    )
    init.add_argument("name", metavar="NAME", help="the model's name (its folder)")
    init.add_argument(
        "--from", dest="source", type=Path, required=True, metavar="PATH", help="the .onnx file"
    )
    Settings.add_arguments(init, only=("model_repository", "log_level"))
    init.add_argument("--force", action="store_true", help="replace a model of that name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args)
    except SettingsError as err:
        parser.error(str(err))
    logs.configure(settings.log_level)
    try:
        if args.command == "serve":
            asyncio.run(serve(settings))
        elif args.command == "init-model":
            written = init_model(
                settings.model_repository, args.name, args.source, force=args.force
            )
            log.info("model initialised; review its config", extra={"config": str(written)})
        elif args.command == "build-minilm":
            # Imported here: the export needs torch and transformers; serving does not.
            from tandem_inference.minilm import build_minilm  # noqa: PLC0415

            build_minilm(settings.model_repository, force=args.force)
        else:
            # Imported here: training needs torch, which serving ONNX models does not.
            from tandem_inference.train import build_models  # noqa: PLC0415

            build_models(settings.model_repository, force=args.force)
    except TandemError as err:
        log.error(err.message, extra={"error": type(err).__name__})
        return 1
    return 0
