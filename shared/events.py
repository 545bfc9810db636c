"""One request model, built once from whatever the platform hands us, and the answers back.

Adapters:
- ``request_from_lambda_event``: AWS API Gateway REST (v1, also Netlify's shape with lower-case
  headers), HTTP API (v2) and Lambda Function URL events; base64 bodies decoded here, once.
- ``lambda_response``: the dict Lambda/API Gateway/Function URLs expect back.
- ``make_wsgi_app``: a WSGI app for the same handler (Vercel ``api/`` shims, the local server, any host).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping

from shared.errors import BadRequest, LengthRequired, PayloadTooLarge, RequestTimeout

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only headers. A repeated header keeps its values joined with ', '."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._values: dict[str, tuple[str, str]] = {}
        for name, value in items:
            key = name.lower()
            if key in self._values:
                original, previous = self._values[key]
                self._values[key] = (original, f"{previous}, {value}")
            else:
                self._values[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._values.values())

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        found = self._values.get(name.lower())
        return found[1] if found else default

    def __repr__(self) -> str:  # never print signature values by accident
        return f"Headers({sorted(self._values)})"


class Request:
    """An HTTP request as every function sees it, whatever platform delivered it.

    (Plain classes rather than dataclasses here and in ``Response``: importing ``dataclasses`` costs more
    cold-start time than the rest of this module.)"""

    __slots__ = ("body", "headers", "host", "method", "path", "query", "scheme")

    def __init__(self, method: str, path: str, headers: Headers, body: bytes, query: dict[str, str] | None = None,
                 host: str | None = None, scheme: str = "https") -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.query = query if query is not None else {}
        self.host = host
        self.scheme = scheme

    def __repr__(self) -> str:  # no body, no header values: nothing secret in a traceback
        return f"Request({self.method} {self.path}, {len(self.body)} bytes, host={self.host!r})"

    @property
    def url(self) -> str | None:
        """The public URL this request was sent to, when the platform tells us the host."""
        if not self.host:
            return None
        return f"{self.scheme}://{self.host}{self.path}"


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body!r})"

    def encoded_body(self) -> bytes:
        # default=str: a detail such as a datetime must not turn finished work into a crash (and a retry)
        return json.dumps(self.body, ensure_ascii=False, default=str).encode("utf-8")

    def all_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json; charset=utf-8", **self.headers}


REASON_PHRASES = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
                  413: "Payload Too Large", 415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
                  500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


# --- AWS Lambda (API Gateway v1 and v2, Function URLs) and Netlify-shaped events ---------------------

def _event_headers(event: Mapping[str, Any]) -> Headers:
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping) and multi:
        return Headers((str(name), str(value)) for name, values in multi.items()
                       for value in (values if isinstance(values, list) else [values]) if value is not None)
    single = event.get("headers")
    if not isinstance(single, Mapping):
        return Headers()
    return Headers((str(name), str(value)) for name, value in single.items() if value is not None)


def request_from_lambda_event(event: Mapping[str, Any]) -> Request:
    """Build a ``Request`` from an API Gateway v1/v2, Function URL or Netlify event."""
    if not isinstance(event, Mapping):
        raise BadRequest("The event is not an HTTP event.", code="bad_event")
    context = event.get("requestContext") if isinstance(event.get("requestContext"), Mapping) else {}
    http = context.get("http") if isinstance(context.get("http"), Mapping) else None
    if http is not None:  # payload format 2.0: HTTP API and Function URLs
        method = str(http.get("method", ""))
        path = str(event.get("rawPath") or http.get("path") or "/")
    else:  # payload format 1.0: REST API, and Netlify
        method = str(event.get("httpMethod", ""))
        path = str(event.get("path") or "/")
    if not method:
        raise BadRequest("The event carries no HTTP method.", code="bad_event")

    headers = _event_headers(event)
    raw_body = event.get("body")
    if raw_body is None:
        body = b""
    elif event.get("isBase64Encoded"):
        if not isinstance(raw_body, str):
            raise BadRequest("The event body is not base64 text.", code="bad_event")
        import binascii  # only base64 events pay for it (Function URLs send JSON bodies as plain text)

        try:
            body = binascii.a2b_base64(raw_body.encode("ascii"), strict_mode=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise BadRequest("The event body is marked base64 but does not decode.", code="bad_event") from None
    elif isinstance(raw_body, str):
        try:
            body = raw_body.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no client could have sent this text
            raise BadRequest("The event body is not valid text.", code="bad_event") from None
    else:
        raise BadRequest("The event body is not text.", code="bad_event")

    query_source = event.get("queryStringParameters")
    query = {str(k): str(v) for k, v in query_source.items()} if isinstance(query_source, Mapping) else {}
    host = context.get("domainName") or headers.get("host")
    scheme = headers.get("x-forwarded-proto", "https").split(",")[0].strip() or "https"
    # The method as sent: HTTP methods are case-sensitive (RFC 9110 9.1), "post" is not POST. API Gateway,
    # Function URLs and Netlify already send the upper-case names.
    return Request(method=method, path=path, headers=headers, body=body, query=query,
                   host=str(host) if host else None, scheme=scheme)


def lambda_response(response: Response) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": response.all_headers(),
        "body": response.encoded_body().decode("utf-8"),
        "isBase64Encoded": False,
    }


# --- WSGI ------------------------------------------------------------------------------------------

# CGI's own names for two headers. Some servers (Vercel's launcher among them) also copy every request header
# into HTTP_*, HTTP_CONTENT_TYPE and HTTP_CONTENT_LENGTH included: the CGI variable is the one that counts,
# and a copy that disagrees with it is a request no two readers would agree on.
_CGI_HEADERS = {"HTTP_CONTENT_TYPE": ("CONTENT_TYPE", "Content-Type"),
                "HTTP_CONTENT_LENGTH": ("CONTENT_LENGTH", "Content-Length")}


def _wsgi_headers(environ: Mapping[str, Any]) -> Headers:
    pairs = []
    for key, value in environ.items():
        if key in _CGI_HEADERS:
            cgi_key, name = _CGI_HEADERS[key]
            cgi_value = environ.get(cgi_key)
            if cgi_value not in (None, "") and str(cgi_value).strip() != str(value).strip():
                raise BadRequest(f"The request carries two different {name} headers.", code="conflicting_headers")
            if cgi_value not in (None, ""):
                continue  # the same header twice, once under each name: keep one
        if key.startswith("HTTP_"):
            pairs.append((key[5:].replace("_", "-").title(), str(value)))
    if environ.get("CONTENT_TYPE"):
        pairs.append(("Content-Type", str(environ["CONTENT_TYPE"])))
    if environ.get("CONTENT_LENGTH"):
        pairs.append(("Content-Length", str(environ["CONTENT_LENGTH"])))
    return Headers(pairs)


def request_from_wsgi(environ: Mapping[str, Any], max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Request:
    """Build a ``Request`` from a WSGI environ, reading at most ``max_body_bytes`` + 1 bytes.

    The body is framed by CONTENT_LENGTH, or by the end of ``wsgi.input`` when the server says it decoded the
    framing itself (``wsgi.input_terminated``: chunked bodies on gunicorn, werkzeug, the local server). A
    Transfer-Encoding the server left to us is 411: its raw bytes are not the body that was signed."""
    headers = _wsgi_headers(environ)
    length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
    stream = environ.get("wsgi.input")
    if length_text:
        if not (length_text.isascii() and length_text.isdigit()):  # isdigit() alone accepts non-ASCII digits
            raise BadRequest("Content-Length is not a number.", code="bad_content_length")
        length = int(length_text)
        if length > max_body_bytes:
            # Refuse before reading: a huge body never reaches memory.
            raise PayloadTooLarge(f"The body is over {max_body_bytes} bytes.")
        body = _read_body(stream, length, exact=True) if stream is not None and length else b""
    elif stream is not None and environ.get("wsgi.input_terminated"):
        body = _read_body(stream, max_body_bytes + 1, exact=False)
    elif headers.get("transfer-encoding", "").strip().lower() not in ("", "identity"):
        raise LengthRequired("Send the body with a Content-Length: this server cannot read a chunked body.")
    else:
        body = b""
    host = headers.get("x-forwarded-host") or headers.get("host") or environ.get("SERVER_NAME")
    scheme = (headers.get("x-forwarded-proto") or str(environ.get("wsgi.url_scheme", "http"))).split(",")[0]
    return Request(
        method=str(environ.get("REQUEST_METHOD", "GET")),  # as sent: "post" is not POST (RFC 9110 9.1)
        path=str(environ.get("PATH_INFO") or "/"),
        headers=headers,
        body=body,
        query={},
        host=str(host) if host else None,
        scheme=scheme.strip(),
    )


def _read_body(stream: Any, size: int, exact: bool) -> bytes:
    """Up to ``size`` bytes of ``stream``; with ``exact``, all of them or a 400. A stream may return less than
    asked before its end (a socket does), so read until it has given ``size`` bytes or b"" (its end).

    The connection can fail under the read (the client reset it, the server's read timeout): that is an
    answer to the client, 400 or 408, never an exception out of the app."""
    chunks: list[bytes] = []
    remaining = size
    try:
        while remaining > 0:
            chunk = stream.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except TimeoutError:
        raise RequestTimeout("The body did not arrive in time.") from None
    except OSError:
        raise BadRequest("The connection failed while the body was being read.", code="incomplete_body") from None
    if exact and remaining > 0:
        raise BadRequest(f"The body ended after {size - remaining} of its {size} bytes (Content-Length).",
                         code="incomplete_body")
    return b"".join(chunks)


def wsgi_reply(response: Response, start_response: Callable[..., Any]) -> list[bytes]:
    payload = response.encoded_body()
    status_line = f"{response.status} {REASON_PHRASES.get(response.status, 'Unknown')}"
    headers = [*response.all_headers().items(), ("Content-Length", str(len(payload)))]
    start_response(status_line, headers)
    return [payload]
