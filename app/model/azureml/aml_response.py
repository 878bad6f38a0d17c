"""`AMLResponse`, the name an Azure ML score.py imports from `azureml.contrib.services.aml_response` (or
`azureml_inference_server_http.api.aml_response`); the loader makes both module names point here.

In azmlinfsrv it is a Flask Response; here it only records what that Response would send: status, ordered
(repeatable) headers and the body. The constructor follows azmlinfsrv 1.5.1 step by step, because scripts depend on
its quirks: a non-JSON message gets Flask's default "text/html; charset=utf-8" unless the headers have a
"Content-Type" key spelled exactly so; every header value is split at commas into repeated headers; a message that
is neither str nor bytes is iterated (a dict gives its keys), as Werkzeug does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from app.model.azureml.aml_request import Headers

__all__ = ["AMLResponse"]

# A read-only stand-in for azmlinfsrv's `response_headers={}` default; an explicit None still fails as it does there.
_NO_HEADERS: Mapping[str, Any] = MappingProxyType({})
# Flask's default mimetype, with the charset Werkzeug adds to text/* types.
DEFAULT_CONTENT_TYPE = "text/html; charset=utf-8"


def _status_code(status: Any) -> int:
    if isinstance(status, int):
        return int(status)
    if isinstance(status, str | bytes):
        text = status.decode("latin-1") if isinstance(status, bytes) else status
        code, _, _ = text.strip().partition(" ")
        return int(code)
    raise TypeError(f"Invalid status argument: {status!r}")


class AMLResponse:
    """An HTTP answer from run(): returned as it is (status, headers, body), with the server's own headers added."""

    def __init__(
        self,
        message: Any,
        status_code: Any,
        response_headers: Mapping[str, Any] = _NO_HEADERS,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        self.headers = Headers()
        self.status_code = _status_code(status_code)
        # Either the encoded body, or (like Werkzeug) the object to iterate when the body is needed.
        self._data: bytes | None = None
        self._iterable: Any = None
        if message is not None:
            if json_str:
                self._set(json.dumps(message), "application/json")
            else:
                self._set(message, DEFAULT_CONTENT_TYPE)
                if "Content-Type" in response_headers:
                    self.headers.remove("Content-Type")  # the loop below adds the script's own
        else:
            self._set(json.dumps({}), "application/json")

        self.headers["x-ms-run-function-failed"] = run_function_failed
        # azmlinfsrv's convention for repeated headers: "a, b" is sent as two headers. A value that is not a str
        # fails here (inside run(), so the request answers 500 "error in scoring script"), as it does there.
        for header, value in response_headers.items():
            for part in value.split(","):
                self.headers.add_header(header, part.strip())

    def _set(self, message: Any, content_type: str) -> None:
        self.headers["Content-Type"] = content_type
        if isinstance(message, str):
            self._data = message.encode("utf-8")
        elif isinstance(message, bytes | bytearray):
            self._data = bytes(message)
        else:
            self._iterable = message

    # --- what azmlinfsrv (Werkzeug) does with it when sending ----------------------------------------------
    def get_data(self, as_text: bool = False) -> Any:
        """The body. For an iterable message this iterates it as Werkzeug does: str items are UTF-8 encoded,
        bytes kept, anything else raises TypeError (which the server turns into a 500)."""
        if self._data is None:
            chunks = []
            for item in self._iterable:
                if isinstance(item, str):
                    chunks.append(item.encode("utf-8"))
                elif isinstance(item, bytes | bytearray | memoryview):
                    chunks.append(bytes(item))
                else:
                    raise TypeError(f"response items must be str or bytes, not {type(item).__name__}")
            self._data = b"".join(chunks)
            self._iterable = None
        return self._data.decode("utf-8", "replace") if as_text else self._data

    def set_data(self, value: str | bytes) -> None:
        self._data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        self._iterable = None

    @property
    def data(self) -> bytes:
        data: bytes = self.get_data()
        return data

    @data.setter
    def data(self, value: str | bytes) -> None:
        self.set_data(value)

    @property
    def status(self) -> str:
        return str(self.status_code)

    @property
    def content_type(self) -> str | None:
        value: str | None = self.headers.get("Content-Type")
        return value

    @content_type.setter
    def content_type(self, value: str) -> None:
        self.headers["Content-Type"] = value

    @property
    def mimetype(self) -> str | None:
        value = self.content_type
        return value.split(";", 1)[0].strip().lower() if value else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.status_code}]>"
