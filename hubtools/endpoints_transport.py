"""An httpx2 transport that sends requests with aiohttp: AsyncInferenceClient, less CPU.

huggingface_hub's `AsyncInferenceClient` talks through an `httpx2.AsyncClient`, whose
default transport (httpcore2's connection pool and h11) costs most of the client CPU of
a request (bench/teachers_client.md). This transport keeps httpx2's client (event hooks,
headers, cookies, redirects, timeouts, response decoding: what huggingface_hub relies
on) and hands only the HTTP/1.1 exchange to one `aiohttp.ClientSession` per client.

aiohttp's errors are raised as the httpx2 exceptions the default transport raises for
the same failure, so huggingface_hub turns timeouts into `InferenceTimeoutError` and
`hubtools.teachers.faults.classify` sees transport errors as transport errors.

Why not the `httpx-aiohttp` package: its httpx2 variant requires httpx too, builds an SSL
context per transport unless given one, and maps every aiohttp `ClientConnectionError`
(a reset or a server that closed mid-answer included) to `httpx2.ConnectTimeout`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx2

# Most specific first: the first match wins.
_ERRORS: tuple[tuple[type[BaseException], type[httpx2.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx2.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx2.ReadTimeout),  # SocketTimeoutError: no byte in time
    (aiohttp.ClientConnectorError, httpx2.ConnectError),  # refused, DNS, TLS handshake
    (aiohttp.ServerDisconnectedError, httpx2.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx2.RemoteProtocolError),  # body cut short
    (aiohttp.ClientResponseError, httpx2.RemoteProtocolError),  # unparsable response
    (aiohttp.InvalidURL, httpx2.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx2.ReadError),  # reset, broken pipe
    (aiohttp.ClientError, httpx2.NetworkError),
    (TimeoutError, httpx2.ReadTimeout),
)


@contextmanager
def _httpx_errors(request: httpx2.Request) -> Iterator[None]:
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(f"{type(exc).__name__}: {exc}", request=request) from exc
        raise  # pragma: no cover - _ERRORS ends with both bases


class _Body(httpx2.AsyncByteStream):
    """An aiohttp response body as httpx2 reads it: chunks as they arrive (SSE included)."""

    __slots__ = ("_response", "_request")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request):
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end gives the connection back to the pool; one cut short
        # (a stream the caller stopped reading) closes it, as httpcore does.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """`httpx2.AsyncClient(transport=AiohttpTransport(...))`: HTTP/1.1 through aiohttp.

    The session is created on the first request, in the running loop (aiohttp sessions
    belong to one loop), with at most `max_connections` connections kept alive. It is
    closed with the httpx2 client or, for clients nobody closes (AsyncInferenceClient
    keeps its httpx2 client until its own `close()`), when the loop shuts down.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_s: float = 4.0,  # under uvicorn's 5 s (vLLM, SGLang): no reuse of a closing one
    ):
        self.max_connections, self.keepalive_s = max_connections, keepalive_s
        self.ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._closer: asyncio.Task | None = None
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=0, keepalive_timeout=self.keepalive_s,
            ssl=self.ssl_context if self.ssl_context is not None else True,
        )  # fmt: skip
        self._session = session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(),  # httpx2 keeps cookies
            auto_decompress=False,  # httpx2 decodes, from the headers it is given
            timeout=aiohttp.ClientTimeout(total=None), skip_auto_headers=("User-Agent",),
        )  # fmt: skip
        self._closer = asyncio.get_running_loop().create_task(self._close_at_shutdown(session))
        return session

    @staticmethod
    async def _close_at_shutdown(session: aiohttp.ClientSession) -> None:
        # asyncio.run cancels the tasks still pending when its main coroutine returns and
        # lets them finish: this one then closes the session, so nothing leaks or warns.
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await session.close()

    def _timeout(self, request: httpx2.Request) -> aiohttp.ClientTimeout:
        t = request.extensions.get("timeout") or {}
        key = (t.get("connect"), t.get("read"), t.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            # httpx2's pool timeout bounds the wait for a connection, as aiohttp's `connect`
            # does; `read` is the longest wait for the next bytes, as `sock_read`.
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[2], sock_connect=key[0], sock_read=key[1]
            )
        return timeout

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        session = self._session
        if session is None or session.closed:
            session = self._open()
        try:
            body: bytes | None = request.content
        except httpx2.RequestNotRead:
            body = await request.aread()
        with _httpx_errors(request):
            response = await session.request(
                request.method, str(request.url), headers=request.headers.multi_items(),
                data=body or None, allow_redirects=False, compress=False,
                timeout=self._timeout(request),
            )  # fmt: skip
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx2.Response(
            status_code=response.status, headers=response.raw_headers,
            stream=_Body(response, request), request=request, extensions=extensions,
        )  # fmt: skip

    async def aclose(self) -> None:
        session, closer = self._session, self._closer
        self._session = self._closer = None
        if session is not None:
            await session.close()
        if closer is not None:
            closer.cancel()
