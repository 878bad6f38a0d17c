"""Loading an Azure ML entry script (score.py) and answering /score for it exactly as azmlinfsrv 1.5.1 does.

Loading follows the server's start-up: AZUREML_MODEL_DIR / AZUREML_ENTRY_SCRIPT set, the script imported from its
file (a fresh module each time), init() and run() required, run()'s signature checked and the way to call it
chosen, init() called with no arguments, the swagger documents built. Whatever the server would die on at start
(exit 3) raises EntryScriptError here.

Scoring follows its /score route: the request is turned into run()'s arguments by one of three parsers (the body
as text for a plain run(); the JSON body's keys as parameters for an inference-schema decorated run(); the request
object for @rawhttp), run() is called with request_headers when it declares them, and what it returns or raises
becomes the status and body the server sends. Nothing here raises: the worst case is the answer the server gives
for it. Calls to run() are serialised, as the server's single sync worker serves one request at a time.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from app.model.azureml import aml_request, aml_response, answers
from app.model.azureml.aml_request import AMLRequest, Headers, RequestEntityTooLarge
from app.model.azureml.aml_response import AMLResponse
from app.model.azureml.answers import Answer, Reply
from app.model.azureml.swagger import (
    DEFAULT_VERSION,
    RunSchemas,
    ServiceSettings,
    SettingsError,
    SwaggerDocs,
    SwaggerNotServed,
    read_settings,
    run_schemas,
)

__all__ = ["Answer", "EntryScript", "EntryScriptError"]

log = logging.getLogger(__name__)

SHIM_DIR = Path(__file__).resolve().parent / "shim"
# The module names score scripts import AMLRequest / AMLResponse / rawhttp from. azmlinfsrv points the first pair
# at its own modules in sys.modules; we point all four at ours.
_API_MODULES = {
    "azureml.contrib.services.aml_request": aml_request,
    "azureml.contrib.services.aml_response": aml_response,
    "azureml_inference_server_http.api.aml_request": aml_request,
    "azureml_inference_server_http.api.aml_response": aml_response,
}
# Imports are serialised: the @rawhttp flag is process-wide and read right after the script's import.
_import_lock = threading.Lock()
_module_numbers = itertools.count(1)

_KEYWORD_KINDS = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class EntryScriptError(RuntimeError):
    """The entry script cannot serve: import failed, init() or run() missing or badly declared, init() raised, an
    invalid swagger or config file. The message says why, with the failing line."""


class _Reject(Exception):
    """The request is refused before run() (azmlinfsrv's BadInput, UnsupportedInput, UnsupportedHTTPMethod)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _where(ex: BaseException) -> str:
    """The last frame of an exception, as "file:line in function" (a SyntaxError's own position)."""
    if isinstance(ex, SyntaxError) and ex.filename:
        return f"{ex.filename}:{ex.lineno}"
    frames = traceback.extract_tb(ex.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def _reason(summary: str, ex: BaseException) -> str:
    where = _where(ex)
    detail = "".join(traceback.format_exception_only(type(ex), ex)).strip()
    return f"{summary}: {detail}" + (f" (at {where})" if where else "")


def _install_api_modules() -> None:
    for name, module in _API_MODULES.items():
        sys.modules[name] = module


def _real_azureml_core() -> bool:
    """Whether `azureml.core` resolves to something other than our shim (the real SDK installed)."""
    try:
        spec = importlib.util.find_spec("azureml.core")
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    locations = list(spec.submodule_search_locations or []) + ([spec.origin] if spec.origin else [])
    return not any(Path(location).resolve().is_relative_to(SHIM_DIR) for location in locations)


def _install_model_shim() -> None:
    """Make `from azureml.core.model import Model` work without the Azure ML SDK: put the shim on sys.path (last,
    so that a real SDK would win) only when the real azureml-core is not importable."""
    if _real_azureml_core():
        return
    shim = str(SHIM_DIR)
    if shim not in sys.path:
        sys.path.append(shim)
    package = sys.modules.get("azureml")
    # An `azureml` namespace imported before (another azureml-* package) has a fixed __path__: extend it.
    search = getattr(package, "__path__", None)
    portion = str(SHIM_DIR / "azureml")
    if search is not None and portion not in list(search):
        try:
            search.append(portion)
        except AttributeError:
            log.warning("cannot add the azureml.core shim to an existing azureml package at %s", list(search))
    importlib.invalidate_caches()


def _install_legacy_aliases() -> None:
    """`from sklearn.externals import joblib`: scikit-learn shipped joblib under that name until 0.23 (removed in
    2020), and the Azure ML -> IoT Edge tutorial's iot_score.py, like every published copy of it, imports it. Azure
    ML's server refuses such a script at start (exit 3); we point the old name at joblib, which it always was."""
    if "sklearn.externals.joblib" in sys.modules:
        return
    try:
        import joblib
        import sklearn.externals
    except ImportError:
        return
    if not hasattr(sklearn.externals, "joblib"):
        sys.modules["sklearn.externals.joblib"] = joblib
        sklearn.externals.joblib = joblib


def _import_script(script: Path) -> tuple[ModuleType, bool]:
    """Import the script under a new module name (a reload gets a fresh module, and inference-schema, which keys
    its schemas by module and function name, a fresh entry). Like azmlinfsrv, the module is not put in
    sys.modules. Returns the module and whether @rawhttp was applied while importing it."""
    name = f"entry_module_{next(_module_numbers)}"
    with _import_lock:
        aml_request._rawHttpRequested = False
        try:
            spec = importlib.util.spec_from_file_location(name, script)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {script} as a Python module")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except BaseException as ex:
            raise EntryScriptError(_reason("Failed to import user script because it raised an unhandled exception", ex)) from ex
        finally:
            raw = aml_request._rawHttpRequested
            aml_request._rawHttpRequested = False
    return module, raw


def _is_response(value: Any) -> bool:
    """run() answered with an HTTP response: our AMLResponse, or a Flask/Werkzeug Response (duck-typed)."""
    if isinstance(value, AMLResponse):
        return True
    return isinstance(getattr(value, "status_code", None), int) and callable(getattr(value, "get_data", None))


def _response_reply(value: Any) -> Reply:
    """The Reply for a response returned by run(). Raises whatever producing its body raises."""
    body = value.get_data()
    headers = value.headers if isinstance(value.headers, Headers) else Headers(_header_pairs(value.headers))
    return Reply(int(value.status_code), bytes(body), headers.copy())


def _header_pairs(headers: Any) -> Iterable[tuple[str, str]]:
    if hasattr(headers, "to_wsgi_list"):
        return [(str(k), str(v)) for k, v in headers.to_wsgi_list()]
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def _parse_value(text: str) -> Any:
    # A query parameter is JSON when it parses as JSON, else the text itself.
    try:
        return json.loads(text)
    except ValueError:
        return text


class EntryScript:
    """A loaded entry script. Build with `EntryScript.load`."""

    path: Path
    decorated: bool
    wants_headers: bool
    raw: bool

    def __init__(
        self,
        *,
        path: Path,
        module: ModuleType,
        run: Callable[..., Any],
        parameters: list[inspect.Parameter],
        schemas: RunSchemas,
        wants_headers: bool,
        raw: bool,
        settings: ServiceSettings,
        app_root: Path,
    ) -> None:
        self.path = path
        self.module = module
        self._run = run
        self._parameters = parameters
        self._schemas = schemas
        self.decorated = schemas.decorated
        self.wants_headers = wants_headers
        self.raw = raw
        self.settings = settings
        self.app_root = app_root
        self._run_lock = threading.Lock()
        self.last_failure: str | None = None  # what run() raised in the last score() that failed in run()
        self._swagger: SwaggerDocs | None = None

    # --- loading --------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, script: Path, model_dir: Path, *, app_root: Path | None = None) -> EntryScript:
        """Import `script`, check it, call its init(). `app_root` (default: the script's directory) is where
        azmlinfsrv would look for swagger*.json and config.json. Raises EntryScriptError."""
        script = Path(script).absolute()
        root = Path(app_root).absolute() if app_root is not None else script.parent
        os.environ["AZUREML_MODEL_DIR"] = str(Path(model_dir).absolute())
        os.environ["AZUREML_ENTRY_SCRIPT"] = str(script.resolve())
        try:
            settings = read_settings(root, script)
        except SettingsError as ex:
            raise EntryScriptError(f"Invalid config: {ex}") from None
        _install_api_modules()
        _install_model_shim()
        _install_legacy_aliases()
        # azmlinfsrv puts its app root on sys.path, so a script imports the modules beside it.
        for directory in dict.fromkeys([str(root), str(script.parent)]):
            if directory not in sys.path:
                sys.path.append(directory)

        module, raw = _import_script(script)
        if not hasattr(module, "init"):
            raise EntryScriptError(f"User script at {script} does not have a init() function defined.")
        if not hasattr(module, "run"):
            raise EntryScriptError(f"User script at {script} does not have a run() function defined.")
        # Some Azure SDKs generate a driver module in front of the score script; azmlinfsrv calls the driver's
        # init() but the score script's run() (the driver's run() drops the schema's arguments).
        driver_target = getattr(module, "driver_module", None)
        if isinstance(driver_target, ModuleType) and hasattr(driver_target, "run"):
            run = driver_target.run
            log.info("entry script %s is a driver for %s", script, getattr(driver_target, "__file__", "?"))
        else:
            run = module.run
        init = module.init

        parameters, wants_headers = cls._analyze_run(run)
        schemas = run_schemas(run)
        if raw and schemas.decorated:
            raise EntryScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
        entry = cls(
            path=script,
            module=module,
            run=run,
            parameters=parameters,
            schemas=schemas,
            wants_headers=wants_headers,
            raw=raw,
            settings=settings,
            app_root=root,
        )
        log.info(
            "entry script %s: run() %s%s",
            script,
            "takes the raw request (@rawhttp)"
            if raw
            else f"is decorated, parameters {[p.name for p in parameters]}"
            if schemas.decorated
            else "takes the body as text",
            ", with request_headers" if wants_headers else "",
        )

        try:
            init()
        except BaseException as ex:
            raise EntryScriptError(_reason("init() failed", ex)) from ex

        try:
            entry._swagger = SwaggerDocs(root, schemas, settings)
        except Exception as ex:
            raise EntryScriptError(_reason("Cannot prepare the swagger documents", ex)) from ex
        return entry

    @staticmethod
    def _analyze_run(run: Callable[..., Any]) -> tuple[list[inspect.Parameter], bool]:
        try:
            parameters = list(inspect.signature(run).parameters.values())
        except (TypeError, ValueError) as ex:
            raise EntryScriptError(f"run() has no usable signature: {ex}") from None
        if any(parameter.kind not in _KEYWORD_KINDS for parameter in parameters):
            raise EntryScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
        wants_headers = any(parameter.name == "request_headers" for parameter in parameters)
        parameters = [parameter for parameter in parameters if parameter.name != "request_headers"]
        if not parameters:
            if wants_headers:
                raise EntryScriptError('run() needs to accept an argument other than "request_headers".')
            raise EntryScriptError("run() needs to accept an argument for input data.")
        return parameters, wants_headers

    @property
    def scoring_timeout_ms(self) -> int:
        """SCORING_TIMEOUT_MS (default one hour): after this azmlinfsrv interrupts run() and answers
        `answers.scoring_timeout(...)`. Enforcing it is the caller's (run() cannot be interrupted in a thread)."""
        return self.settings.scoring_timeout_ms

    # --- scoring --------------------------------------------------------------------------------------------
    def score(
        self,
        body: bytes,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        method: str = "POST",
        query: str = "",
    ) -> Answer:
        """What azmlinfsrv answers to `<method> /score?<query>` with these headers and body. Never raises.
        After a 500 of run()'s making, `last_failure` says what run() raised (the answer's body does not: an edge
        error record needs a reason a person can act on)."""
        self.last_failure = None
        try:
            return self._score(bytes(body), headers, method.upper(), query)
        except Exception:
            log.exception("unexpected failure answering /score")
            return answers.finish(answers.error_reply(500, answers.INTERNAL_ERROR), None)

    def _score(self, body: bytes, headers: Mapping[str, str] | Iterable[tuple[str, str]], method: str, query: str) -> Answer:
        # /score takes GET, POST, OPTIONS (and HEAD, which Flask adds to GET routes); other methods fail routing,
        # before any of the blueprint's hooks.
        if method not in ("GET", "POST", "OPTIONS", "HEAD"):
            return answers.method_not_allowed()
        request_headers = answers.wsgi_headers(headers)
        request = AMLRequest(method, "/score", query, request_headers, body)
        ids, early = answers.request_ids(request.headers)
        if early is not None:
            return answers.finish(early, ids)

        try:
            arguments = self._arguments(request)
        except _Reject as rejected:
            return answers.finish(rejected.reply, ids)
        except RequestEntityTooLarge as ex:
            return answers.finish(answers.error_reply(ex.code, ex.description), ids)
        except Exception:
            # e.g. a JSON body that is not UTF-8 (json.loads raises UnicodeDecodeError, which the server's parser
            # does not expect): the server's catch-all answer.
            log.exception("azmlinfsrv would fail parsing this request")
            return answers.finish(answers.error_reply(500, answers.INTERNAL_ERROR), ids)

        if self.wants_headers:
            arguments["request_headers"] = dict(request_headers)
        with self._run_lock:
            started = time.perf_counter()
            try:
                output = self._run(**arguments)
            except Exception as ex:
                log.debug("run() raised", exc_info=True)  # the caller reports it (last_failure), once per message
                self.last_failure = _reason("run() raised", ex)
                return answers.finish(answers.error_reply(500, answers.RUN_FAILED, run_function_failed=True), ids)
            except BaseException as ex:
                # SystemExit and the like escape Flask; gunicorn answers with its own page.
                log.exception("run() raised a BaseException")
                self.last_failure = _reason("run() raised", ex)
                return answers.gunicorn_error()
            elapsed_ms = (time.perf_counter() - started) * 1000
        return self._answer_output(output, elapsed_ms, ids)

    def _answer_output(self, output: Any, elapsed_ms: float, ids: answers.RequestIds) -> Answer:
        if _is_response(output):
            try:
                reply = _response_reply(output)
            except Exception:
                # The server only produces the body after the route returned; failing there is Werkzeug's 500.
                log.exception("the response run() returned cannot be sent")
                return answers.finish(answers.error_reply(500, answers.WERKZEUG_INTERNAL_ERROR), ids)
            if reply.status >= 500:
                reply.headers["x-ms-run-function-failed"] = True
        else:
            try:
                reply = answers.aml_reply(output, 200)
            except Exception:
                # Not JSON-serialisable (bytes, numpy arrays and scalars other than float64, sets...).
                log.exception("run() returned a value json.dumps cannot encode: %s", type(output).__name__)
                self.last_failure = f"run() returned a {type(output).__name__}, which json.dumps cannot encode"
                return answers.finish(answers.error_reply(500, answers.INTERNAL_ERROR), ids)
        reply.headers.add("x-ms-run-fn-exec-ms", f"{elapsed_ms:.3f}")
        return answers.finish(reply, ids)

    def _arguments(self, request: AMLRequest) -> dict[str, Any]:
        """run()'s keyword arguments for this request (azmlinfsrv's input parsers)."""
        first = self._parameters[0].name
        if self.raw:
            return {first: request}
        if request.method == "GET":
            parameters = self._query_parameters(request)
            if not self.decorated:
                return {first: json.dumps(parameters)}
            return self._extract(parameters)
        if request.method != "POST":
            if request.method == "OPTIONS":
                # With CORS on, flask-cors adds its headers to this answer.
                raise _Reject(answers.aml_reply("", 200, json_str=False))
            raise _Reject(answers.error_reply(405, "Method not allowed"))
        if not self.decorated:
            try:
                return {first: str(request.data, "utf-8")}
            except UnicodeDecodeError as ex:
                raise _Reject(answers.error_reply(400, f"Input cannot be decoded as UTF-8: {ex}")) from None
        if not request.is_json:
            raise _Reject(answers.error_reply(415, "Expects Content-Type to be application/json"))
        data = request.get_data()
        try:
            value = json.loads(data)
        except json.JSONDecodeError as ex:
            if data:
                raise _Reject(answers.error_reply(400, f"POST body could not be decoded as JSON: {ex}")) from None
            raise _Reject(answers.error_reply(400, "POST body is empty. Expecting a JSON dictionary.")) from None
        if not isinstance(value, dict):
            raise _Reject(answers.error_reply(400, "POST body should be a JSON dictionary."))
        return self._extract(value)

    @staticmethod
    def _query_parameters(request: AMLRequest) -> dict[str, Any]:
        # Every query value parsed as JSON when it is JSON; a repeated name gives a list.
        parameters: dict[str, Any] = {}
        for key in request.args:
            values = request.args.getlist(key)
            parameters[key] = _parse_value(values[0]) if len(values) == 1 else [_parse_value(v) for v in values]
        return parameters

    def _extract(self, body: Mapping[str, Any]) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for parameter in self._parameters:
            value = body.get(parameter.name, parameter.default)
            if value is inspect.Parameter.empty:
                raise _Reject(answers.error_reply(400, f"A value is not provided for the {parameter.name!r} parameter."))
            arguments[parameter.name] = value
        return arguments

    # --- swagger and the start-up trial ---------------------------------------------------------------------
    def swagger(
        self, version: str | None = None, *, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> Answer:
        """GET /swagger.json?version=<version> (None: no version parameter, i.e. "2"). Never raises."""
        try:
            ids, early = answers.request_ids(Headers(answers.wsgi_headers(headers or {})))
            if early is not None:
                return answers.finish(early, ids)
            assert self._swagger is not None
            try:
                document = self._swagger.get(DEFAULT_VERSION if version is None else version)
            except SwaggerNotServed as ex:
                return answers.finish(answers.error_reply(404, str(ex)), ids)
            return answers.finish(answers.aml_reply(document, 200), ids)
        except Exception:
            log.exception("unexpected failure answering /swagger.json")
            return answers.finish(answers.error_reply(500, answers.INTERNAL_ERROR), None)

    def sample_input(self) -> bytes | None:
        """For a decorated run() with an input schema, a /score body made of the schema's examples (the
        ServiceInput example of the swagger document); None otherwise."""
        if not self.decorated or not isinstance(self._schemas.input_schema, Mapping):
            return None
        example = self._schemas.input_schema.get("example")
        if not isinstance(example, Mapping):
            return None
        properties = self._schemas.input_schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        sample = {}
        for parameter in self._parameters:
            if parameter.name not in example:
                continue
            # inference-schema lists every argument, with an empty schema and "" as the example for those that
            # have no @input_schema; an optional one of those is better left to its default.
            if properties.get(parameter.name) == {} and parameter.default is not inspect.Parameter.empty:
                continue
            sample[parameter.name] = example[parameter.name]
        if not sample:
            return None
        try:
            return json.dumps(sample).encode("utf-8")
        except (TypeError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
