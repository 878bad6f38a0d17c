"""The command line: `python -m app` runs the module on edgeHub; subcommands for everything else.

Thin on purpose: parse the arguments, read the settings, call the command's module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from app.model.convert import DEFAULT_TOLERANCE, ConversionRefused, OnnxRequest, read_rows
from app.model.modeldir import ModelDirError
from app.model.register import RegisterError
from app.model.scorer import ScriptLoadError
from app.settings import ConfigError, Settings, load_settings
from edgekit.logs import configure_logging


def _tags(values: list[str]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"--tag {value!r}: use KEY=VALUE")
        tags[key] = val
    return tags


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description="Edge inference module runtime.")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("module", help="serve edgeHub inputs (the default; the container's command)")

    s = sub.add_parser("simulate", help="run the pipeline on a built-in simulated sensor, no Azure needed")
    s.add_argument("--messages", type=int, default=1000, help="how many messages; 0 runs until Ctrl-C (default 1000)")
    s.add_argument("--rate", type=float, default=0.0, help="messages per second; 0 is as fast as the model takes them")
    s.add_argument("--bad-every", type=int, default=0, metavar="K", help="make every K-th message malformed")
    s.add_argument("--aggregate", action="store_true", help="pack predictions into few messages (AGGREGATE=true)")
    s.add_argument("--json", action="store_true", help="one JSON object per output line, then a JSON summary")

    sv = sub.add_parser("serve", help="the HTTP endpoint alone (POST /score, health, metrics), no edgeHub needed")
    sv.add_argument("--port", type=int, default=None, help="default: HTTP_PORT (5001)")
    sv.add_argument("--host", default=None, help="default: HTTP_HOST if set, else 127.0.0.1 (this machine only)")

    sub.add_parser("health", help="exit 0 if the module's HTTP liveness path answers (the images' HEALTHCHECK)")

    sc = sub.add_parser("score", help="score recorded message bodies, one per line, in order")
    sc.add_argument("file", help="input file, or - for stdin")

    sub.add_parser("train", help="train the default model into MODEL_DIR (what `make model` runs)")
    st = sub.add_parser("settings", help="print the settings in effect (JSON), or the README's settings tables")
    st.add_argument("--markdown", action="store_true", help="the README's two settings tables, made from the settings model")
    st.add_argument("--readme", metavar="PATH", help="rewrite the settings tables in this README")
    b = sub.add_parser(
        "bundle", help="one tar.gz of a registered model directory (verified first), for a rollout: prints sha256 and size"
    )
    b.add_argument("model_dir", metavar="MODEL_DIR")
    b.add_argument("--out", default=None, metavar="FILE", help="default: <name>-v<version>.tar.gz here")
    b.add_argument("--json", action="store_true", help="one JSON line: file, sha256, size, name, version")
    sub.add_parser("selftest", help="load the model with all checks and score fixed readings (for images)")
    sd = sub.add_parser(
        "script-deps",
        help="the pip requirements of an Azure ML scoring script, for requirements/script.txt, from its conda "
        "environment file (or a requirements.txt); says on stderr what it drops and why",
    )
    sd.add_argument("file", metavar="FILE", help="conda file (*.yml, *.yaml: myenv.yml, conda.yaml...) or requirements.txt")
    sd.add_argument(
        "--write", metavar="PATH", default=None, help="write them to PATH (e.g. requirements/script.txt); default stdout"
    )

    r = sub.add_parser(
        "register",
        help="install a trained model file, or a directory of a registered Azure ML model's files, into the model "
        "directory (it unpickles the main model file: register only files you trust)",
    )
    r.add_argument(
        "source",
        metavar="MODEL",
        help="a joblib or pickle file of a fitted estimator, or a directory holding what AZUREML_MODEL_DIR would "
        "(files and sub-folders keep their names and layout); the model directory itself adopts it as it is",
    )
    r.add_argument("--name", required=True)
    r.add_argument(
        "--features",
        default="",
        help="comma-separated dotted paths, e.g. machine.temperature,machine.pressure; required for the built-in "
        "score.py, optional when SCORE_SCRIPT names your own (an Azure ML score.py takes raw JSON)",
    )
    r.add_argument(
        "--file",
        default=None,
        metavar="PATH",
        help="for a directory: the main model file the built-in score.py loads, relative to it "
        "(default: its only *.pkl or *.joblib)",
    )
    r.add_argument("--labels", default="", help="comma-separated names of the model's classes, in order")
    r.add_argument("--description", default="")
    r.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--model-dir", default=None, help="default: MODEL_DIR")
    r.add_argument(
        "--onnx",
        action="store_true",
        help="also convert the model to ONNX (skl2onnx) and run it on ONNX Runtime, the pickle kept as the reference; "
        "refused unless labels match exactly and probabilities within --tolerance on --check-rows",
    )
    r.add_argument("--onnx-only", action="store_true", help="with --onnx: keep model.onnx alone, no pickle")
    r.add_argument(
        "--check-rows",
        metavar="FILE",
        default=None,
        help="with --onnx: feature rows to compare on, a sample of the training data (.csv of numbers or .npy)",
    )
    r.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="with --onnx: largest probability difference accepted (default 1e-5)",
    )
    return p


def _onnx_request(args: argparse.Namespace) -> OnnxRequest | None:
    """What --onnx asks for, the check rows read; None without --onnx."""
    if not args.onnx:
        if args.onnx_only or args.check_rows or args.tolerance is not None:
            raise ValueError("--onnx-only, --check-rows and --tolerance go with --onnx")
        return None
    if not args.check_rows:
        raise ValueError("--onnx needs --check-rows FILE: rows of the training data to compare the conversion on")
    try:
        rows = read_rows(args.check_rows)
    except ConversionRefused as exc:
        raise ValueError(str(exc)) from None
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    return OnnxRequest(rows, Path(args.check_rows).name, tolerance, only=args.onnx_only)


def _reason(exc: BaseException | None) -> str:
    """The error and its causes: the SDK wraps the useful part (e.g. the workload API's refusal) in generic errors."""
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(str(exc) or repr(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return ": ".join(parts)


def _print_settings(settings: Settings, markdown: bool, readme: str | None) -> int:
    from app.settings.docs import tables, update_readme

    if readme:
        print(f"{readme}: {'updated' if update_readme(Path(readme)) else 'already up to date'}")
    elif markdown:
        print(tables(), end="")
    else:
        print(json.dumps(settings.shown(), indent=2))
    return 0


def _bundle(model_dir: str, out: str | None, as_json: bool) -> int:
    from app.model.bundle import write_bundle
    from app.model.modeldir import read_manifest

    if out is None:
        manifest = read_manifest(Path(model_dir))
        out = f"{manifest.name}-v{manifest.version}.tar.gz"
    info = write_bundle(model_dir, out)
    m = info.manifest
    if as_json:
        shown = {"file": str(info.path), "sha256": info.sha256, "size": info.size, "name": m.name, "version": m.version}
        print(json.dumps(shown))
    else:
        print(f"bundled {m.name} v{m.version} into {info.path}\nsha256 {info.sha256}\nsize {info.size}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    command = args.command or "module"
    try:
        if command == "module":
            from app.main import run_module

            return asyncio.run(run_module(settings))
        if command == "health":
            from app.commands.serve import health_probe

            return health_probe(settings)
        if command == "settings":
            return _print_settings(settings, args.markdown, args.readme)
        if command == "serve":
            from app.commands.serve import serve, serve_host

            settings = settings.replace(
                http_port=settings.http_port if args.port is None else args.port,
                http_host=serve_host(args.host, settings),
            )
            if settings.http_port == 0:
                raise ConfigError("serve needs a port: set HTTP_PORT or --port")
            return asyncio.run(serve(settings))
        if command == "simulate":
            from app.commands.simulate import simulate

            if args.aggregate:
                settings = settings.replace(aggregate=True)
            asyncio.run(simulate(settings, args.messages, args.rate, args.json, args.bad_every))
            return 0
        if command == "score":
            from app.commands.score_file import open_source, score_file

            with open_source(args.file) as source:
                summary = asyncio.run(score_file(settings, source, sys.stdout.buffer))
            print(
                f"scored {summary['lines']} lines: {summary['predictions']} predictions, {summary['errors']} errors",
                file=sys.stderr,
            )
            return 0
        if command == "selftest":
            from app.commands.selftest import selftest

            summary = asyncio.run(selftest(settings))
            ok = summary["predictions"] == summary["lines"] - 1 and summary["errors"] == 1
            print(f"selftest {'passed' if ok else 'FAILED'}: {summary}", file=sys.stderr)
            return 0 if ok else 1
        if command == "bundle":
            return _bundle(args.model_dir, args.out, args.json)
        if command == "script-deps":
            from app.commands.script_deps import script_deps

            return script_deps(args.file, args.write)
        if command == "train":
            from app.model.train import train_default

            manifest, accuracy = train_default(settings.model_dir)
            print(f"trained {manifest.name} v{manifest.version} ({manifest.sha256[:12]}), held-out accuracy {accuracy:.4f}")
            return 0
        if command == "register":
            from app.model.register import register

            manifest = register(
                args.source,
                args.model_dir or settings.model_dir,
                name=args.name,
                features=[f.strip() for f in args.features.split(",") if f.strip()],
                description=args.description,
                tags=_tags(args.tag),
                labels=[x.strip() for x in args.labels.split(",") if x.strip()] or None,
                file=args.file,
                # The built-in score.py builds rows from the features; an own (Azure ML) script takes raw JSON.
                require_features=not settings.score_script,
                onnx=_onnx_request(args),
            )
            where = args.model_dir or settings.model_dir
            count = f": {len(manifest.files)} files" if len(manifest.files) > 1 else ""
            print(f"registered {manifest.name} v{manifest.version} ({manifest.sha256[:12]}) in {where}{count}")
            if manifest.onnx:
                check = manifest.onnx["check"]
                print(
                    f"ONNX: {manifest.onnx_file} runs on ONNX Runtime ({manifest.onnx['converter']}); checked on "
                    f"{check['rows']} rows ({check['sample']}): {check['labelMismatches']} label mismatches, largest "
                    f"{check['measured']} difference {check['maxDifference']:.3g} (tolerance {check['tolerance']:g})"
                )
            return 0
    except (ModelDirError, ScriptLoadError, RegisterError, ConfigError, ValueError, OSError) as exc:
        print(f"error: {_reason(exc)}", file=sys.stderr)
        if command == "module" and os.environ.get("IOTEDGE_WORKLOADURI"):
            uri = os.environ["IOTEDGE_WORKLOADURI"]
            print(
                f"hint: the IoT Edge workload API at {uri} could not be used (is the IoT Edge runtime running?)", file=sys.stderr
            )
        elif command == "module" and isinstance(exc, OSError):
            print(
                "hint: `python -m app` talks to edgeHub and needs an IoT Edge environment; "
                "try `python -m app simulate` to run without Azure.",
                file=sys.stderr,
            )
        return 2
    except KeyboardInterrupt:
        return 130
    return 2
