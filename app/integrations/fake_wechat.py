"""A fake of WeChat's server APIs on loopback, for tests and the demo.

It is a real HTTP server, so the product's httpx client is exercised as in production.
js_code `<openid>` or `<openid>#<anything>` logs in as that openid; each code works once
(a reused one answers 40163, as WeChat does). A phone code `phone:<number>` yields that number.
Subscribe messages are checked as WeChat checks them (current token, template id, the shape and
limits of the data) and kept in `delivered`; `refuse(openid)` makes that villager answer 43101.
Access tokens change when force-refreshed or `expire_token()` is called; an old one answers
40001. Failures are queued per API, in code (`fail_next`) or over HTTP (`POST /__fake/fail`);
`GET /__fake/sent` lists the messages delivered, `POST /__fake/refuse` refuses an openid.
"""

import hashlib
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Api = Literal["code2session", "token", "phone", "send"]
APIS: tuple[Api, ...] = ("code2session", "token", "phone", "send")
ERRMSG = {
    -1: "system error",
    40029: "invalid code",
    40163: "code been used",
    45011: "api minute-quota reach limit mustslower retry next minute",
    40226: "invalid user: high risk",
    40013: "invalid appid",
    40125: "invalid appsecret",
    40001: "invalid credential, access_token is invalid or not latest",
    40037: "invalid template_id",
    43101: "user refuse to accept the msg",
    47003: "argument invalid!",
}
# The subscribe-message data limits the fake enforces, so truncation is tested end to end.
THING_MAX_LENGTH = 20


@dataclass
class Failure:
    errcode: int | None = None
    http_status: int | None = None
    delay_seconds: float = 0.0
    # Answered as they are, with status 200: a body WeChat should never send (not JSON, no
    # errcode), or one its Content-Encoding header says is compressed when it is not.
    body: bytes | None = None
    content_encoding: str | None = None


@dataclass
class FakeWechatState:
    appid: str
    secret: str
    used_codes: set[str] = field(default_factory=set)
    failures: dict[str, deque[Failure]] = field(default_factory=lambda: {a: deque() for a in APIS})
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    token_generation: int = 0
    token_expires_in: int = 7200
    refused_openids: set[str] = field(default_factory=set)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current_token(self) -> str:
        seed = f"{self.appid}:{self.secret}:{self.token_generation}"
        return hashlib.sha256(seed.encode()).hexdigest()

    # Shared by the test-side methods and the demo's /__fake control routes.

    def queue_failure(self, api: str, failure: Failure, times: int) -> None:
        with self.lock:
            self.failures[api].extend([failure] * times)

    def refuse(self, openid: str) -> None:
        with self.lock:
            self.refused_openids.add(openid)

    def sent(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.delivered)


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 refuses connections when many phones log in at once.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a delayed answer (a simulated timeout) closed its socket;
        # that is the point of the delay, not an error worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeWechatServer:
    def __init__(self, appid: str, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = FakeWechatState(appid=appid, secret=secret)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> "FakeWechatServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(
        self,
        api: Api,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        delay_seconds: float = 0.0,
        body: bytes | None = None,
        content_encoding: str | None = None,
        times: int = 1,
    ) -> None:
        failure = Failure(errcode, http_status, delay_seconds, body, content_encoding)
        self.state.queue_failure(api, failure, times)

    def calls_to(self, api: Api) -> list[dict[str, Any]]:
        with self.state.lock:
            return [params for name, params in self.state.calls if name == api]

    def refuse(self, openid: str) -> None:
        """That villager has not subscribed: sends to them answer 43101."""
        self.state.refuse(openid)

    def expire_token(self) -> None:
        """WeChat invalidates the current access token (as a force refresh elsewhere would)."""
        with self.state.lock:
            self.state.token_generation += 1

    def current_token(self) -> str:
        with self.state.lock:
            return self.state.current_token()

    def delivered(self) -> list[dict[str, Any]]:
        """The subscribe messages WeChat accepted, in order."""
        return self.state.sent()

    def reset(self) -> None:
        with self.state.lock:
            self.state.used_codes.clear()
            self.state.calls.clear()
            self.state.refused_openids.clear()
            self.state.delivered.clear()
            self.state.token_expires_in = 7200
            for queue in self.state.failures.values():
                queue.clear()


def session_key_for(openid: str) -> str:
    return hashlib.sha256(b"fake-session-key:" + openid.encode()).hexdigest()[:24]


class _Handler(BaseHTTPRequestHandler):
    state: FakeWechatState
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on a kept-alive
    # connection the body then waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self._send_raw(json.dumps(body).encode(), status=status)

    def _send_raw(
        self, body: bytes, content_encoding: str | None = None, status: int = 200
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if content_encoding:
            self.send_header("Content-Encoding", content_encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, errcode: int) -> None:
        self._send(200, {"errcode": errcode, "errmsg": ERRMSG.get(errcode, "error")})

    def _json_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _injected_failure(self, api: Api) -> bool:
        with self.state.lock:
            failure = self.state.failures[api].popleft() if self.state.failures[api] else None
        if failure is None:
            return False
        if failure.delay_seconds:
            time.sleep(failure.delay_seconds)
        if failure.body is not None:
            self._send_raw(failure.body, failure.content_encoding)
            return True
        if failure.http_status:
            self._send(failure.http_status, {"error": "injected"})
            return True
        if failure.errcode is not None:
            self._error(failure.errcode)
            return True
        return False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/sns/jscode2session":
            self._code2session(query)
        elif url.path == "/cgi-bin/token":
            self._token(query)
        elif url.path == "/__fake/sent":
            self._send(200, {"sent": self.state.sent()})
        else:
            self._send(404, {"errcode": 404, "errmsg": "not found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._json_body()
        if url.path == "/cgi-bin/stable_token":
            self._token(body)
        elif url.path == "/wxa/business/getuserphonenumber":
            self._phone(query, body)
        elif url.path == "/cgi-bin/message/subscribe/send":
            self._send_message(query, body)
        elif url.path == "/__fake/fail":
            self._control(body)
        elif url.path == "/__fake/refuse":
            self._refuse(body)
        else:
            self._send(404, {"errcode": 404, "errmsg": "not found"})

    def _record(self, api: Api, params: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.calls.append((api, params))

    def _code2session(self, query: dict[str, str]) -> None:
        self._record("code2session", query)
        if self._injected_failure("code2session"):
            return
        if query.get("appid") != self.state.appid:
            return self._error(40013)
        if query.get("secret") != self.state.secret:
            return self._error(40125)
        code = query.get("js_code", "")
        if not code or query.get("grant_type") != "authorization_code":
            return self._error(40029)
        with self.state.lock:
            reused = code in self.state.used_codes
            self.state.used_codes.add(code)
        if reused:
            return self._error(40163)
        openid = code.split("#", 1)[0]
        self._send(200, {"openid": openid, "session_key": session_key_for(openid)})

    def _token(self, params: dict[str, Any]) -> None:
        self._record("token", params)
        if self._injected_failure("token"):
            return
        if params.get("appid") != self.state.appid or params.get("secret") != self.state.secret:
            return self._error(40125)
        with self.state.lock:
            if params.get("force_refresh") is True:
                self.state.token_generation += 1
            token, expires_in = self.state.current_token(), self.state.token_expires_in
        self._send(200, {"access_token": token, "expires_in": expires_in})

    def _phone(self, query: dict[str, str], body: dict[str, Any]) -> None:
        self._record("phone", {**query, **body})
        if self._injected_failure("phone"):
            return
        with self.state.lock:
            expected = self.state.current_token()
        if query.get("access_token") != expected:
            return self._error(40001)
        code = str(body.get("code", ""))
        if not code.startswith("phone:") or len(code) <= len("phone:"):
            return self._error(40029)
        number = code.removeprefix("phone:")
        self._send(
            200,
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    "phoneNumber": number,
                    "purePhoneNumber": number,
                    "countryCode": "86",
                    "watermark": {"timestamp": int(time.time()), "appid": self.state.appid},
                },
            },
        )

    def _send_message(self, query: dict[str, str], body: dict[str, Any]) -> None:
        self._record("send", {**query, **body})
        if self._injected_failure("send"):
            return
        with self.state.lock:
            expected = self.state.current_token()
            refused = body.get("touser") in self.state.refused_openids
        if query.get("access_token") != expected:
            return self._error(40001)
        if not body.get("touser"):
            return self._error(40003)
        if not body.get("template_id"):
            return self._error(40037)
        data = body.get("data")
        if (
            not isinstance(data, dict)
            or not data
            or not all(_valid_field(k, v) for k, v in data.items())
        ):
            return self._error(47003)
        if refused:
            return self._error(43101)
        with self.state.lock:
            self.state.delivered.append(body)
            msgid = len(self.state.delivered)
        self._send(200, {"errcode": 0, "errmsg": "ok", "msgid": msgid})

    def _refuse(self, body: dict[str, Any]) -> None:
        openid = body.get("openid")
        if not isinstance(openid, str) or not openid:
            return self._send(400, {"error": "openid is required"})
        self.state.refuse(openid)
        self._send(200, {"refused": openid})

    def _control(self, body: dict[str, Any]) -> None:
        api = body.get("api")
        if api not in APIS:
            return self._send(400, {"error": f"api must be one of {APIS}"})
        failure = Failure(
            errcode=body.get("errcode"),
            http_status=body.get("http_status"),
            delay_seconds=float(body.get("delay_seconds") or 0),
            body=body["body"].encode() if isinstance(body.get("body"), str) else None,
            content_encoding=body.get("content_encoding"),
        )
        self.state.queue_failure(api, failure, int(body.get("times") or 1))
        self._send(200, {"queued": api})


def _valid_field(key: str, field: Any) -> bool:
    if not isinstance(field, dict) or not isinstance(field.get("value"), str) or not field["value"]:
        return False
    return not key.startswith("thing") or len(field["value"]) <= THING_MAX_LENGTH
