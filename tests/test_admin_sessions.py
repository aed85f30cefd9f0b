"""Admin page sessions and logins: logout ends a session on every worker, a
session has an absolute lifetime, failed logins are logged and throttled,
and a guessable token is refused when the app is created."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from quart_waffle import ConfigurationError, QuartWaffle
from quart_waffle.admin import sessions, throttle
from quart_waffle.admin.sessions import SESSION_LIFETIME
from quart_waffle.admin.throttle import (
    MAX_FAILURES,
    MAX_WORKER_FAILURES,
    WINDOW,
    LimitReached,
    LoginThrottle,
    client_bucket,
)
from tests.helpers import ADMIN_TOKEN, make_waffle, serving

TOKEN = ADMIN_TOKEN
SECRET_KEY = "test-secret-key"


def page_waffle(database_url: str, token: str = TOKEN) -> QuartWaffle:
    waffle = make_waffle(database_url, admin_token=token)
    assert waffle.app is not None
    waffle.app.secret_key = SECRET_KEY
    return waffle


def client_of(waffle: QuartWaffle) -> Client:
    assert waffle.app is not None
    return waffle.app.test_client()


async def html(response: Any) -> str:
    text: str = await response.get_data(as_text=True)
    return text


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None, page
    return match.group(1)


async def log_in(client: Client, token: str = TOKEN) -> str:
    """Log in through the form; return the session cookie the browser keeps."""
    form = await client.get("/waffle/")
    response = await client.post(
        "/waffle/login", form={"csrf": csrf_of(await html(form)), "token": token}
    )
    assert response.status_code == 303, await html(response)
    cookie = response.headers["Set-Cookie"]
    return cookie.split(";", 1)[0]


async def sees_settings(client: Client, cookie: str) -> bool:
    """Whether a browser sending only ``cookie`` is logged in."""
    page = await html(await client.get("/waffle/", headers={"Cookie": cookie}))
    return 'id="settings-form"' in page


async def test_logout_ends_a_copied_session_on_every_worker(sqlite_url: str) -> None:
    first, second = page_waffle(sqlite_url), page_waffle(sqlite_url)
    async with serving(first, second):
        browser = client_of(first)
        cookie = await log_in(browser)
        assert await sees_settings(client_of(first), cookie)
        assert await sees_settings(client_of(second), cookie)  # one session, every worker
        csrf = csrf_of(await html(await browser.get("/waffle/")))
        assert (await browser.post("/waffle/logout", form={"csrf": csrf})).status_code == 303
        assert not await sees_settings(client_of(first), cookie)
        assert not await sees_settings(client_of(second), cookie)
        # A save with the copied cookie and a valid CSRF token is refused too.
        thief = client_of(second)
        response = await thief.post(
            "/waffle/save",
            form={"csrf": csrf, "revision": "0", "present-MAINTENANCE": "1"},
            headers={"Cookie": cookie},
        )
        assert response.status_code == 401
        assert first.get("MAINTENANCE") is False


async def test_a_session_ends_at_its_absolute_lifetime(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waffle = page_waffle(sqlite_url)
    async with serving(waffle):
        client = client_of(waffle)
        cookie = await log_in(client)
        # Using the session does not extend it: no new cookie, however busy.
        for _ in range(3):
            response = await client.get("/waffle/", headers={"Cookie": cookie})
            assert "Set-Cookie" not in response.headers
        now = sessions._now()
        monkeypatch.setattr(sessions, "_now", lambda: now + SESSION_LIFETIME - 5)
        assert await sees_settings(client, cookie)
        monkeypatch.setattr(sessions, "_now", lambda: now + SESSION_LIFETIME + 1)
        assert not await sees_settings(client, cookie)


async def test_rotating_the_token_logs_page_sessions_out(sqlite_url: str) -> None:
    old = page_waffle(sqlite_url)
    rotated = page_waffle(sqlite_url, token="a-brand-new-admin-token-9876")
    async with serving(old, rotated):
        cookie = await log_in(client_of(old))
        assert await sees_settings(client_of(old), cookie)
        assert not await sees_settings(client_of(rotated), cookie)


@pytest.mark.parametrize(
    "token",
    [
        "   ",
        " \t\n ",
        "short",
        "x" * 15,
        f" {TOKEN}",
        f"{TOKEN}\n",
        "x" * 64,
        "12" * 20,
        "abcdefg" * 5,
    ],
)
def test_guessable_or_padded_tokens_are_refused_at_start_up(sqlite_url: str, token: str) -> None:
    with pytest.raises(ConfigurationError, match="WAFFLE_ADMIN_TOKEN") as caught:
        make_waffle(sqlite_url, admin_token=token)
    message = str(caught.value)
    assert "16 characters" in message
    assert "8 different" in message
    assert "secrets.token_urlsafe" in message
    if token.strip():
        assert token.strip() not in message


def test_a_sixteen_character_token_of_eight_characters_is_accepted(sqlite_url: str) -> None:
    make_waffle(sqlite_url, admin_token="abcdefgh" * 2)


async def test_failed_logins_are_logged_and_throttled(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quart_waffle")
    wrong = "wrong-token-but-long-enough"
    waffle = page_waffle(sqlite_url)
    async with serving(waffle):
        client = client_of(waffle)
        csrf = csrf_of(await html(await client.get("/waffle/")))
        for _ in range(MAX_FAILURES):
            response = await client.post("/waffle/login", form={"csrf": csrf, "token": wrong})
            assert response.status_code == 401
        lines = [record.getMessage() for record in caplog.records]
        failures = [line for line in lines if "failed login" in line]
        assert len(failures) == MAX_FAILURES
        assert all("127.0.0.1" in line or "<local>" in line for line in failures), failures
        assert wrong not in caplog.text
        # Now even the right token waits, on the page and on the API alike.
        page = await client.post("/waffle/login", form={"csrf": csrf, "token": TOKEN})
        api = await client.get("/waffle/api/settings", headers={"Authorization": f"Bearer {TOKEN}"})
        for response in (page, api):
            assert response.status_code == 429
            assert 1 <= int(response.headers["Retry-After"]) <= WINDOW
        body = await api.get_json()
        assert body["error"]["code"] == "too_many_failed_logins"
        assert "Authorization" in body["error"]["fields"]
        assert "try again in" in await html(page)


async def test_wrong_bearer_tokens_count_too(sqlite_url: str) -> None:
    waffle = page_waffle(sqlite_url)
    async with serving(waffle):
        client = client_of(waffle)
        for _ in range(MAX_FAILURES):
            response = await client.get(
                "/waffle/api/settings", headers={"Authorization": "Bearer not-the-token"}
            )
            assert response.status_code == 401
        response = await client.get(
            "/waffle/api/settings", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert response.status_code == 429


def test_throttle_counts_per_address_within_a_window() -> None:
    now = [1000.0]
    limiter = LoginThrottle(clock=lambda: now[0])
    for _ in range(MAX_FAILURES - 1):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == (WINDOW, LimitReached.CLIENT)
    assert limiter.retry_after("10.0.0.2") is None  # another address is not affected
    now[0] += WINDOW / 2
    assert limiter.retry_after("10.0.0.1") == (WINDOW / 2, LimitReached.CLIENT)
    now[0] += WINDOW / 2
    assert limiter.retry_after("10.0.0.1") is None  # the oldest failure left the window
    limiter.failed("10.0.0.1")
    limiter.succeeded("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is None


def test_throttle_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "_MAX_ADDRESSES", 3)
    limiter = LoginThrottle()
    for address in ("a", "b", "c", "d"):
        for _ in range(MAX_FAILURES):
            limiter.failed(address)
    assert limiter.retry_after("a") is None  # the least recent was forgotten
    assert limiter.retry_after("d") is not None


@pytest.mark.parametrize(
    ("scheme", "host", "works"),
    [
        ("http", "192.168.1.5:8000", False),
        ("http", "admin.example.com", False),
        ("http", "localhost.example.com", False),
        ("http", "[fe80::1]:8000", False),
        ("http", "localhost:8000", True),
        ("http", "admin.localhost", True),
        ("http", "127.0.0.2", True),
        ("http", "[::1]:8000", True),
        ("https", "192.168.1.5:8000", True),
    ],
)
async def test_page_over_plain_http_says_why_it_cannot_log_in(
    sqlite_url: str, scheme: str, host: str, works: bool
) -> None:
    waffle = page_waffle(sqlite_url)
    async with serving(waffle):
        client = client_of(waffle)
        response = await client.get("/waffle/", scheme=scheme, headers={"Host": host})
        page = await html(response)
        if works:
            assert response.status_code == 200
            assert 'id="token"' in page
        else:
            assert response.status_code == 403
            assert "needs HTTPS" in page
            assert "localhost" in page
            assert 'id="token"' not in page
            assert "Set-Cookie" not in response.headers
            login = await client.post(
                "/waffle/login",
                form={"csrf": "x", "token": TOKEN},
                scheme=scheme,
                headers={"Host": host},
            )
            assert login.status_code == 403
            assert "needs HTTPS" in await html(login)
            # the API works there with the bearer token
            api = await client.get(
                "/waffle/api/settings",
                scheme=scheme,
                headers={"Host": host, "Authorization": f"Bearer {TOKEN}"},
            )
            assert api.status_code == 200


async def test_a_missing_sessions_table_is_a_setup_error(database_url: str) -> None:
    """With WAFFLE_CREATE_TABLES off and the admin's table not created, login
    says which table is missing and how to create it (not 'unreachable', not 500)."""
    from sqlalchemy import text

    waffle = page_waffle(database_url)
    async with serving(waffle):
        async with waffle.engine.begin() as connection:
            await connection.execute(text("DROP TABLE waffle_admin_sessions"))
        client = client_of(waffle)
        form = await client.get("/waffle/")
        response = await client.post(
            "/waffle/login", form={"csrf": csrf_of(await html(form)), "token": TOKEN}
        )
        assert response.status_code == 503
        page = await html(response)
        assert "waffle_admin_sessions does not exist" in page
        assert "WAFFLE_CREATE_TABLES" in page


async def test_page_refuses_while_sessions_cannot_be_checked(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quart_waffle.errors import StoreUnavailableError

    waffle = page_waffle(sqlite_url)
    async with serving(waffle):
        client = client_of(waffle)
        cookie = await log_in(client)

        async def unreachable(self: object, session_id: str) -> bool:
            raise StoreUnavailableError("settings database unavailable: OSError: refused")

        monkeypatch.setattr(sessions.SessionStore, "is_open", unreachable)
        response = await client.get("/waffle/", headers={"Cookie": cookie})
        assert response.status_code == 503
        page = await html(response)
        assert "Database unreachable" in page
        assert 'id="settings-form"' not in page
        api = await client.get("/waffle/api/settings", headers={"Authorization": f"Bearer {TOKEN}"})
        assert api.status_code == 200


def test_ipv6_clients_are_counted_by_their_64_network() -> None:
    limiter = LoginThrottle()
    for host in range(MAX_FAILURES):  # one host rotating through its /64
        limiter.failed(f"2001:db8:1:2::{host + 1:x}")
    assert limiter.retry_after("2001:db8:1:2:ffff::9") is not None
    assert limiter.retry_after("2001:db8:1:3::1") is None  # the next /64 is another client
    assert client_bucket("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_bucket("::ffff:10.0.0.1") == "10.0.0.1"
    assert client_bucket("10.0.0.1") == "10.0.0.1"
    assert client_bucket("unix-socket") == "unix-socket"


def test_a_worker_refuses_every_token_login_after_many_failures_from_everyone() -> None:
    now = [1000.0]
    limiter = LoginThrottle(clock=lambda: now[0])
    reached = [limiter.failed(f"10.0.{n // 250}.{n % 250}") for n in range(MAX_WORKER_FAILURES)]
    assert reached[:-1] == [None] * (MAX_WORKER_FAILURES - 1)
    assert reached[-1] is LimitReached.WORKER
    assert limiter.retry_after("192.0.2.1") == (WINDOW, LimitReached.WORKER)  # a new address too
    now[0] += WINDOW
    assert limiter.retry_after("192.0.2.1") is None


async def test_failed_logins_beyond_the_limits_are_summed_up_in_one_line(
    sqlite_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="quart_waffle")
    monkeypatch.setattr(throttle, "MAX_WORKER_FAILURES", MAX_FAILURES * 2)
    waffle = page_waffle(sqlite_url)
    async with serving(waffle):
        client = client_of(waffle)
        wrong = {"Authorization": "Bearer not-the-token"}
        right = {"Authorization": f"Bearer {TOKEN}"}
        statuses = [
            (
                await client.get("/waffle/api/settings", headers=wrong, scope_base={"client": peer})
            ).status_code
            for peer in [("2001:db8::1", 1)] * (MAX_FAILURES + 3)
            + [("198.51.100.7", 1)] * (MAX_FAILURES + 3)
        ]
        assert statuses == ([401] * MAX_FAILURES + [429] * 3) * 2
        # the worker's limit is reached: even the right token waits, from a new address
        response = await client.get(
            "/waffle/api/settings", headers=right, scope_base={"client": ("192.0.2.9", 1)}
        )
        assert response.status_code == 429
        assert "on this server" in (await response.get_json())["error"]["message"]
    lines = [record.getMessage() for record in caplog.records if "admin:" in record.getMessage()]
    assert len([line for line in lines if "failed login" in line]) == MAX_FAILURES * 2
    assert len([line for line in lines if "refusing logins from 2001:db8::1" in line]) == 1
    assert "network 2001:db8::/64" in caplog.text
    assert len([line for line in lines if "refusing every token login" in line]) == 1
    assert len(lines) == MAX_FAILURES * 2 + 2
