"""`rawhttp` and `AMLRequest`, the names an Azure ML score.py imports from `azureml.contrib.services.aml_request`
(or `azureml_inference_server_http.api.aml_request`); the loader makes both module names point here.

azmlinfsrv hands a @rawhttp run() its Flask request object. We have no Flask, so `AMLRequest` is a small stand-in
with the parts of Flask's request that score scripts use (method, args, headers, get_data/data, get_json/json,
form, files, ...), behaving like Werkzeug 3.1 (the version azmlinfsrv 1.5.1 installs) where scripts could tell the
difference: e.g. `data` is empty for form content types because parsing the form consumed the body.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.cookies import SimpleCookie
from io import BytesIO
from os import PathLike
from typing import IO, Any, TypeVar
from urllib.parse import parse_qsl

__all__ = ["AMLRequest", "FileStorage", "Headers", "MultiDict", "RequestEntityTooLarge", "rawhttp"]

F = TypeVar("F", bound=Callable[..., Any])

# Set by @rawhttp, read (and reset) by the loader around the import of a score script. azmlinfsrv keeps the same
# process-wide flag: @rawhttp on any function of the script switches run() to the raw request.
_rawHttpRequested = False


def rawhttp(func: F) -> F:
    """Mark run() as wanting the raw request (an `AMLRequest`) instead of the parsed body."""
    global _rawHttpRequested
    _rawHttpRequested = True
    return func


# Werkzeug's form limits as Flask 3.1 configures them (MAX_FORM_MEMORY_SIZE, MAX_FORM_PARTS): a non-file multipart
# field over the size, or more parts, is a 413.
MAX_FORM_MEMORY_SIZE = 500_000
MAX_FORM_PARTS = 1_000
FORM_MIMETYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
_PART_CHARSETS = frozenset({"ascii", "us-ascii", "utf-8", "iso-8859-1"})


class RequestEntityTooLarge(ValueError):
    """A form exceeded Werkzeug's limits (Werkzeug answers 413 with this description)."""

    code = 413
    description = "The data value transmitted exceeds the capacity limit."

    def __init__(self) -> None:
        super().__init__(f"413 Request Entity Too Large: {self.description}")


class BadRequest(ValueError):
    """What Flask raises for a body it cannot parse as JSON (a run() that lets it escape answers 500)."""


class UnsupportedMediaType(ValueError):
    """What Flask raises for get_json() on a request that is not JSON."""


def _typed_get(mapping: Any, key: str, default: Any, type: Callable[[Any], Any] | None) -> Any:
    """Werkzeug's get(key, default, type): the first value, converted; `default` when absent or not convertible."""
    try:
        value = mapping[key]
    except KeyError:
        return default
    if type is None:
        return value
    try:
        return type(value)
    except (ValueError, TypeError):
        return default


class MultiDict(dict[str, list[Any]]):
    """Werkzeug's MultiDict as scripts see it: `[key]` and `.get` give the first value, `.getlist` all of them,
    iteration and `dict(md)` the keys / first values. Values are kept as lists in the dict itself, like Werkzeug,
    so `json.dumps(md)` gives the same lists."""

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__()
        for key, value in items:
            self.add(key, value)

    def add(self, key: str, value: Any) -> None:
        dict.setdefault(self, key, []).append(value)

    def __getitem__(self, key: str) -> Any:
        if dict.__contains__(self, key):
            values = dict.__getitem__(self, key)
            if values:
                return values[0]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, [value])

    def __iter__(self) -> Iterator[str]:
        return iter(dict.keys(self))

    def get(self, key: str, default: Any = None, type: Callable[[Any], Any] | None = None) -> Any:
        return _typed_get(self, key, default, type)

    def getlist(self, key: str, type: Callable[[Any], Any] | None = None) -> list[Any]:
        stored: list[Any] | None = dict.get(self, key)
        values = list(stored or ())
        if type is None:
            return values
        result = []
        for value in values:
            with contextlib.suppress(ValueError, TypeError):
                result.append(type(value))
        return result

    def items(self, multi: bool = False) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        for key, values in dict.items(self):
            if multi:
                for value in values:
                    yield key, value
            elif values:
                yield key, values[0]

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        for values in dict.values(self):
            yield values[0]

    def lists(self) -> Iterator[tuple[str, list[Any]]]:
        for key, values in dict.items(self):
            yield key, list(values)

    def to_dict(self, flat: bool = True) -> dict[str, Any]:
        if flat:
            return dict(self.items())
        return dict(self.lists())

    def copy(self) -> MultiDict:
        return MultiDict(self.items(multi=True))


class Headers:
    """Case-insensitive, ordered, repeatable headers (Werkzeug's Headers, the parts scripts use). Values are
    stored as str, as Werkzeug does (`True` becomes "True")."""

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for key, value in items:
            self.add(key, value)

    @staticmethod
    def _value(value: Any) -> str:
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError("Header values must not contain newline characters.")
        return text

    def add(self, _key: str, _value: Any, **options: Any) -> None:
        value = self._value(_value)
        for name, option in options.items():
            value += f"; {name.replace('_', '-')}" if option is None else f'; {name.replace("_", "-")}="{option}"'
        self._items.append((_key, value))

    add_header = add

    def set(self, _key: str, _value: Any) -> None:
        value = self._value(_value)
        lowered = _key.lower()
        for index, (name, _old) in enumerate(self._items):
            if name.lower() == lowered:
                self._items[index] = (_key, value)
                self._items = self._items[: index + 1] + [kv for kv in self._items[index + 1 :] if kv[0].lower() != lowered]
                return
        self._items.append((_key, value))

    __setitem__ = set

    def setdefault(self, key: str, default: Any) -> str:
        if key in self:
            return self[key]
        self.set(key, default)
        return self[key]

    def remove(self, key: str) -> None:
        lowered = key.lower()
        self._items = [kv for kv in self._items if kv[0].lower() != lowered]

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.remove(key)

    def __getitem__(self, key: str) -> str:
        lowered = key.lower()
        for name, value in self._items:
            if name.lower() == lowered:
                return value
        raise KeyError(key)

    def get(self, key: str, default: Any = None, type: Callable[[str], Any] | None = None) -> Any:
        return _typed_get(self, key, default, type)

    def getlist(self, key: str, type: Callable[[str], Any] | None = None) -> list[Any]:
        lowered = key.lower()
        values = [value for name, value in self._items if name.lower() == lowered]
        if type is None:
            return values
        result = []
        for value in values:
            with contextlib.suppress(ValueError, TypeError):
                result.append(type(value))
        return result

    get_all = getlist

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(name.lower() == key.lower() for name, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def keys(self, lower: bool = False) -> Iterator[str]:
        for name, _ in self._items:
            yield name.lower() if lower else name

    def values(self) -> Iterator[str]:
        for _, value in self._items:
            yield value

    def items(self, lower: bool = False) -> Iterator[tuple[str, str]]:
        for name, value in self._items:
            yield (name.lower() if lower else name), value

    def extend(self, other: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        pairs = other.items() if isinstance(other, Mapping) else other
        for key, value in pairs:
            self.add(key, value)

    def to_wsgi_list(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and other._items == self._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class _ContentTypeOf:
    """Werkzeug's content_type / mimetype / mimetype_params, read from `headers` (a request's or an uploaded file's)."""

    headers: Any

    @property
    def content_type(self) -> str | None:
        value: str | None = self.headers.get("Content-Type")
        return value

    @property
    def mimetype(self) -> str:
        return parse_options_header(self.content_type or "")[0].lower()

    @property
    def mimetype_params(self) -> dict[str, str]:
        return parse_options_header(self.content_type or "")[1]


class FileStorage(_ContentTypeOf):
    """An uploaded file of a multipart form (Werkzeug's FileStorage, the parts scripts use)."""

    def __init__(self, stream: IO[bytes], filename: str | None, name: str | None, headers: Headers) -> None:
        self.stream = stream
        self.filename = filename
        self.name = name
        self.headers = headers

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def save(self, dst: str | PathLike[str] | IO[bytes], buffer_size: int = 16384) -> None:
        if isinstance(dst, str | PathLike):
            with open(dst, "wb") as target:
                shutil.copyfileobj(self.stream, target, buffer_size)
        else:
            shutil.copyfileobj(self.stream, dst, buffer_size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.stream)

    def __bool__(self) -> bool:
        return bool(self.filename)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.filename!r} ({self.content_type!r})>"


_OPTION_RE = re.compile(r';\s*([^\s;=]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;]*))?', re.S)


def parse_options_header(value: str) -> tuple[str, dict[str, str]]:
    """`text/plain; charset="utf-8"` -> ("text/plain", {"charset": "utf-8"}): names lowered, quotes removed."""
    if not value:
        return "", {}
    head, sep, rest = value.partition(";")
    options: dict[str, str] = {}
    for match in _OPTION_RE.finditer(sep + rest):
        name, raw = match.group(1).lower(), (match.group(2) or "").strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        options[name] = raw
    return head.strip(), options


def _requote_undecodable(error: UnicodeError) -> tuple[str, int]:
    # Werkzeug's "werkzeug.url_quote" error handler: bytes that are not UTF-8 after %-decoding go back to %XX.
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(f"%{byte:02X}" for byte in bad), error.end


_URL_QUOTE_ERRORS = "app.model.azureml.url_quote"
codecs.register_error(_URL_QUOTE_ERRORS, _requote_undecodable)


def parse_query(query: str) -> MultiDict:
    """A query string the way Werkzeug 3.1 decodes `request.args` (and a urlencoded form): `&`-separated, blank
    values kept, `+` is a space, invalid %-escapes left as they are, non-UTF-8 bytes re-quoted."""
    return MultiDict(parse_qsl(query, keep_blank_values=True, errors=_URL_QUOTE_ERRORS))


def _split_lines(block: bytes) -> list[bytes]:
    return [line for line in re.split(rb"\r\n|\n|\r", block) if line]


def _parse_multipart(body: bytes, boundary: bytes) -> tuple[MultiDict, MultiDict]:
    """multipart/form-data into (form, files), with Werkzeug's limits. A malformed body raises ValueError (the
    caller treats it as an empty form, as Werkzeug's silent parser does)."""
    delimiter = re.compile(rb"(?:^|\r\n|\n|\r)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|\n|\r|$)")
    matches = list(delimiter.finditer(body))
    if not matches:
        # Werkzeug buffers until it finds the first boundary; a body that never has one hits the memory limit.
        if len(body) > MAX_FORM_MEMORY_SIZE:
            raise RequestEntityTooLarge()
        raise ValueError("Unexpected end of form")
    form, files = MultiDict(), MultiDict()
    for parts, (here, after) in enumerate(itertools.pairwise(matches), start=1):
        if here.group(1):  # the closing delimiter: what follows is the epilogue
            break
        part = body[here.end() : after.start()]
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
        headers = Headers()
        for line in _split_lines(head):
            header_name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                headers.add(header_name.strip(), value.strip())
        if "Content-Disposition" not in headers:
            raise ValueError("Missing Content-Disposition header")
        if parts > MAX_FORM_PARTS:
            raise RequestEntityTooLarge()
        _, options = parse_options_header(headers["Content-Disposition"])
        name, filename = options.get("name"), options.get("filename")
        if filename is None:
            if len(content) > MAX_FORM_MEMORY_SIZE:
                raise RequestEntityTooLarge()
            # Werkzeug honours only a short safe list of part charsets; anything else is read as UTF-8.
            charset = parse_options_header(headers.get("Content-Type", ""))[1].get("charset", "").lower()
            if charset not in _PART_CHARSETS:
                charset = "utf-8"
            form.add(name or "", content.decode(charset, "replace"))
        else:
            files.add(name or "", FileStorage(BytesIO(content), filename, name, headers))
    else:
        if not matches[-1].group(1):
            raise ValueError("Unexpected end of form")
    return form, files


class AMLRequest(_ContentTypeOf):
    """The request a @rawhttp run() receives (Flask's request in azmlinfsrv)."""

    def __init__(
        self,
        method: str = "GET",
        path: str = "/score",
        query: str = "",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        remote_addr: str | None = None,
    ) -> None:
        self.method = method.upper()
        self.path = path
        self.query_string = query.encode("latin-1", "replace")
        self.headers = Headers(headers)
        self.remote_addr = remote_addr
        self.args = parse_query(query)
        self.environ: dict[str, Any] = {}
        self._body = body
        self._unread = True  # the body stream has not been read yet
        self._cached_data: bytes | None = None
        self._form: MultiDict | None = None
        self._files: MultiDict | None = None
        self._json: dict[bool, Any] = {}

    # --- metadata -------------------------------------------------------------------------------------------
    @property
    def full_path(self) -> str:
        return f"{self.path}?{self.query_string.decode('latin-1')}"

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        try:
            return max(0, int(value)) if value is not None else None
        except ValueError:
            return None

    @property
    def is_json(self) -> bool:
        mimetype = self.mimetype
        return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))

    @property
    def host(self) -> str:
        return str(self.headers.get("Host", ""))

    @property
    def scheme(self) -> str:
        return "http"

    @property
    def host_url(self) -> str:
        return f"{self.scheme}://{self.host}/"

    @property
    def url_root(self) -> str:
        return self.host_url

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def url(self) -> str:
        query = self.query_string.decode("latin-1")
        return f"{self.base_url}?{query}" if query else self.base_url

    @property
    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for value in self.headers.getlist("Cookie"):
            try:
                jar.load(value)
            except Exception:
                continue
        return {name: morsel.value for name, morsel in jar.items()}

    # --- body -----------------------------------------------------------------------------------------------
    def _read_stream(self) -> bytes:
        if not self._unread:
            return b""
        self._unread = False
        return self._body

    @property
    def stream(self) -> IO[bytes]:
        if self._cached_data is not None:
            return BytesIO(self._cached_data)
        return BytesIO(self._read_stream())

    input_stream = stream

    def _load_form_data(self) -> None:
        if self._form is not None:
            return
        self._form, self._files = MultiDict(), MultiDict()
        mimetype = self.mimetype
        if mimetype not in FORM_MIMETYPES:
            return
        if mimetype == "multipart/form-data":
            boundary = self.mimetype_params.get("boundary", "")
            if not boundary:
                return  # Werkzeug gives up before reading: the body is still there for get_data()
        source = self._cached_data if self._cached_data is not None else self._read_stream()
        try:
            if mimetype == "multipart/form-data":
                self._form, self._files = _parse_multipart(source, boundary.encode("ascii", "replace"))
            else:
                self._form = parse_query(source.decode())
        except RequestEntityTooLarge:
            raise
        except ValueError:
            pass  # Werkzeug's form parser is silent: a malformed form is an empty one

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False) -> Any:
        if parse_form_data:
            self._load_form_data()
        if self._cached_data is not None:
            data = self._cached_data
        else:
            data = self._read_stream()
            if cache:
                self._cached_data = data
        return data.decode("utf-8", "replace") if as_text else data

    @property
    def data(self) -> bytes:
        data: bytes = self.get_data(parse_form_data=True)
        return data

    @property
    def form(self) -> MultiDict:
        self._load_form_data()
        assert self._form is not None
        return self._form

    @property
    def files(self) -> MultiDict:
        self._load_form_data()
        assert self._files is not None
        return self._files

    @property
    def values(self) -> MultiDict:
        combined = MultiDict(self.args.items(multi=True))
        if self.method != "GET":
            for key, value in self.form.items(multi=True):
                combined.add(key, value)
        return combined

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and silent in self._json:
            return self._json[silent]
        if not (force or self.is_json):
            if silent:
                return None
            raise UnsupportedMediaType(
                "415 Unsupported Media Type: Did not attempt to load JSON data because the request Content-Type was"
                " not 'application/json'."
            )
        data = self.get_data(cache=cache)
        try:
            value = json.loads(data)
        except ValueError as ex:
            if silent:
                value = None
                if cache:
                    self._json[True] = None
                return value
            raise BadRequest(f"400 Bad Request: Failed to decode JSON object: {ex}") from None
        if cache:
            self._json[False] = self._json[True] = value
        return value

    @property
    def json(self) -> Any:
        return self.get_json()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.base_url}' [{self.method}]>"
