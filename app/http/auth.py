"""The optional bearer token of the HTTP endpoint (HTTP_TOKEN, or HTTP_TOKEN_FILE: a mounted secret).

With a token set, every request but GET /live (the liveness probe: the images' HEALTHCHECK and
orchestrators ask it without credentials) must carry `Authorization: Bearer <token>`; anything
else gets 401 with `WWW-Authenticate: Bearer` before its body is read. The comparison takes the
same time whatever the guess (hmac.compare_digest). The token is never logged, never echoed in an
answer, and a start-up error about it names the variable or the file, not the token.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import hdrs, web

from app.core.errors import ErrorCode
from app.http.errors import HttpStats, error_response
from app.settings import ConfigError, Settings

log = logging.getLogger(__name__)

TOKEN_FILE_MAX_BYTES = 64 * 1024  # a token is a line; a bigger file is the wrong file
OPEN_PATHS = frozenset({"/live"})  # answered without a token (GET and HEAD)


def _problem(variable: str, text: str) -> ConfigError:
    return ConfigError("invalid settings", [f"{variable}: {text}"])


def _checked(token: str, variable: str) -> str:
    # The token travels in a header: one run of visible ASCII characters (RFC 6750's b64token and more).
    if not all("!" <= ch <= "~" for ch in token):
        raise _problem(variable, "the token must be one line of visible ASCII characters (no spaces or control characters)")
    return token


def load_token(settings: Settings) -> str:
    """The bearer token in effect ("" for none), read once at start; ConfigError names what is wrong."""
    if settings.http_token and settings.http_token_file:
        raise _problem("HTTP_TOKEN_FILE", "set HTTP_TOKEN or HTTP_TOKEN_FILE, not both")
    if settings.http_token:
        return _checked(settings.http_token.strip(), "HTTP_TOKEN")
    path = settings.http_token_file
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            data = f.read(TOKEN_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise _problem("HTTP_TOKEN_FILE", f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > TOKEN_FILE_MAX_BYTES:
        raise _problem("HTTP_TOKEN_FILE", f"{path} is over {TOKEN_FILE_MAX_BYTES} bytes: not a token file")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:  # its message would quote the bytes
        raise _problem("HTTP_TOKEN_FILE", f"{path} is not UTF-8 text") from None
    if not token:
        raise _problem("HTTP_TOKEN_FILE", f"{path} is empty")
    return _checked(token, f"HTTP_TOKEN_FILE ({path})")


class BearerAuth:
    def __init__(self, token: str, stats: HttpStats) -> None:
        self._token = token.encode("ascii")
        self._stats = stats

    @property
    def enabled(self) -> bool:
        return bool(self._token)

    def denial(self, request: web.BaseRequest) -> web.Response | None:
        """None if the request may go on, else its 401."""
        if not self._token or (request.method in (hdrs.METH_GET, hdrs.METH_HEAD) and request.path in OPEN_PATHS):
            return None
        header = request.headers.get(hdrs.AUTHORIZATION)
        challenge = "Bearer"
        if header is None:
            reason = "this endpoint needs an Authorization: Bearer <token> header"
        else:
            scheme, _, credentials = header.strip().partition(" ")
            credentials = credentials.strip()
            if scheme.lower() != "bearer" or not credentials:
                reason = "the Authorization header must be: Bearer <token>"
            else:
                try:
                    given = credentials.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    given = b""
                if hmac.compare_digest(given, self._token):
                    return None
                reason, challenge = "the bearer token is not valid", 'Bearer error="invalid_token"'
        self._stats.error(ErrorCode.UNAUTHORIZED)
        log.debug("401 for %s %s from %s: %s", request.method, request.path, request.remote, reason)
        return error_response(401, ErrorCode.UNAUTHORIZED, reason, {hdrs.WWW_AUTHENTICATE: challenge})
