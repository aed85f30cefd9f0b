"""Settings metrics in one process: what moves them, who may read them, and
what happens without the ``metrics`` extra. Real workers: test_metrics_workers.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from harness import REDIS_URL
from harness.processes import ROOT
from quart_waffle import QuartWaffle
from quart_waffle.admin.throttle import MAX_FAILURES, MAX_WORKER_FAILURES
from quart_waffle.errors import ConfigurationError
from quart_waffle.metrics import available, sync_observer
from quart_waffle.metrics.prometheus import PrometheusObserver, forget_dead_workers
from quart_waffle.sync.message import Carried, Hint, decode_message, derive_key, encode_message
from quart_waffle.sync.observer import SyncObserver
from tests.conftest import require
from tests.helpers import ADMIN_TOKEN, make_waffle, serving
from tests.sync_helpers import until

METRICS_TOKEN = "metrics-scraper-token-0123456789"
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def test_the_envelope_carries_its_send_time() -> None:
    key = derive_key("k")
    payload = encode_message(
        Hint(8, "a1"), {"THEME": '"dark"'}, key=key, store="s", max_payload=4096
    )
    message = decode_message(payload, key, "s")
    assert isinstance(message, Carried)
    assert abs(message.sent_at - time.time()) < 5


def test_the_observer_moves_the_metrics() -> None:
    observer = PrometheusObserver()
    before = {
        "catch_ups": sample("quart_waffle_catch_ups_total"),
        "direct": sample("quart_waffle_changes_applied_directly_total"),
        "errors": sample("quart_waffle_sync_errors_total", {"kind": "channel"}),
        "samples": sample("quart_waffle_propagation_seconds_count"),
    }
    observer.channel(True)
    assert sample("quart_waffle_channel_up") == 1
    observer.served(10)
    observer.heard(13)  # a newer revision announced: three behind until caught up
    assert sample("quart_waffle_revision") == 10
    assert sample("quart_waffle_revision_lag") == 3
    observer.served(11)
    assert sample("quart_waffle_revision_lag") == 2
    observer.served(13)
    observer.caught_up()
    assert sample("quart_waffle_revision_lag") == 0
    sent = time.time() - 0.02
    observer.served(14)
    observer.applied_directly(Carried(14, "b2", 13, (("THEME", '"dark"'),), "s", sent))
    observer.error("channel")
    observer.channel(False)
    assert sample("quart_waffle_channel_up") == 0
    assert sample("quart_waffle_catch_ups_total") == before["catch_ups"] + 1
    assert sample("quart_waffle_changes_applied_directly_total") == before["direct"] + 1
    assert sample("quart_waffle_sync_errors_total", {"kind": "channel"}) == before["errors"] + 1
    assert sample("quart_waffle_propagation_seconds_count") == before["samples"] + 1
    # 20 ms: in the 25 ms bucket's count, not in the 10 ms one's
    assert sample("quart_waffle_propagation_seconds_bucket", {"le": "0.01"}) < sample(
        "quart_waffle_propagation_seconds_bucket", {"le": "0.025"}
    )


async def test_a_change_from_another_worker_moves_the_metrics(
    sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    require("Redis")
    options: dict[str, Any] = {
        "watchtype": "redis",
        "redis_url": REDIS_URL,
        "redis_channel": f"waffle-test-{os.urandom(6).hex()}",
        "check_interval": 60.0,
    }
    writer, reader = (make_waffle(sqlite_url, **options) for _ in range(2))
    for waffle in (writer, reader):
        assert waffle.app is not None
        waffle.app.secret_key = "metrics-test-secret"  # signs carried changes
    async with serving(writer, reader):
        direct = sample("quart_waffle_changes_applied_directly_total")
        samples = sample("quart_waffle_propagation_seconds_count")
        revision = await writer.update({"THEME": "dark"}, actor="test")
        await until(lambda: reader.revision == revision, 10, "the reader applies the change")
        assert sample("quart_waffle_changes_applied_directly_total") == direct + 1
        assert sample("quart_waffle_propagation_seconds_count") == samples + 1
        assert sample("quart_waffle_revision") == revision
        assert sample("quart_waffle_channel_up") == 1


def _metrics_app(sqlite_url: str, **options: Any) -> QuartWaffle:
    waffle = make_waffle(sqlite_url, **options)
    assert waffle.app is not None
    waffle.app.secret_key = "metrics-test-secret"
    return waffle


async def _get(waffle: QuartWaffle, headers: dict[str, str] | None = None) -> tuple[int, str]:
    assert waffle.app is not None
    response = await waffle.app.test_client().get("/waffle/metrics", headers=headers or {})
    return response.status_code, await response.get_data(as_text=True)


async def test_the_endpoint_refuses_a_scraper_without_the_token(sqlite_url: str) -> None:
    waffle = _metrics_app(sqlite_url, metrics_token=METRICS_TOKEN)
    async with serving(waffle):
        status, body = await _get(waffle)
        assert status == 401
        assert "quart_waffle" not in body
        status, body = await _get(waffle, {"Authorization": "Bearer wrong-but-long-enough"})
        assert status == 401
        assert "invalid_token" in body
        status, body = await _get(waffle, BEARER)  # the control
        assert status == 200
        assert "# TYPE quart_waffle_revision gauge" in body
        assert "quart_waffle_catch_ups_total" in body


async def test_the_metrics_token_opens_nothing_else(sqlite_url: str) -> None:
    waffle = _metrics_app(sqlite_url, metrics_token=METRICS_TOKEN, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    async with serving(waffle):
        client = waffle.app.test_client()
        response = await client.get("/waffle/api/settings", headers=BEARER)
        assert response.status_code == 401
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (await _get(waffle, admin))[0] == 200  # the admin's token reads the metrics
        assert (await _get(waffle, BEARER))[0] == 200


async def test_wrong_metrics_tokens_do_not_lock_the_admin_out(sqlite_url: str) -> None:
    """A scraper with a wrong token, from many addresses, reaches /metrics'
    own limit (429) but not the admin's: the admin still logs in."""
    waffle = _metrics_app(sqlite_url, metrics_token=METRICS_TOKEN, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    async with serving(waffle):
        client = waffle.app.test_client()
        wrong = {"Authorization": "Bearer wrong-but-long-enough"}
        statuses = set()
        for n in range(MAX_WORKER_FAILURES + 5):  # 5 per address, ~20 addresses
            peer = {"client": (f"198.51.100.{n // MAX_FAILURES}", 1)}
            response = await client.get("/waffle/metrics", headers=wrong, scope_base=peer)
            statuses.add(response.status_code)
        assert statuses == {401, 429}
        response = await client.get("/waffle/metrics", headers=BEARER)
        assert response.status_code == 429  # /metrics' own limit holds
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = await client.get("/waffle/api/settings", headers=admin)
        assert response.status_code == 200


async def test_the_endpoint_is_closed_until_configured(sqlite_url: str) -> None:
    closed = _metrics_app(sqlite_url)
    public = _metrics_app(sqlite_url, metrics_public=True)

    async def approve(request: Any) -> bool:
        return bool(request.headers.get("X-Scraper") == "yes")

    callback = make_waffle(sqlite_url)
    callback.authorize = approve
    async with serving(closed, public, callback):
        status, body = await _get(closed)
        assert status == 403
        assert "metrics_not_configured" in body
        assert "WAFFLE_METRICS_TOKEN" in body
        assert (await _get(public))[0] == 200
        assert (await _get(callback))[0] == 403
        assert (await _get(callback, {"X-Scraper": "yes"}))[0] == 200


def test_a_guessable_metrics_token_is_refused(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError, match="WAFFLE_METRICS_TOKEN"):
        make_waffle(sqlite_url, metrics_token="short")


async def test_without_the_extra_the_endpoint_says_metrics_are_disabled(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if absent
    assert not available()
    assert type(sync_observer()) is SyncObserver
    waffle = _metrics_app(sqlite_url, metrics_token=METRICS_TOKEN)
    async with serving(waffle):
        assert type(waffle._connected().sync.observer) is SyncObserver
        assert (await _get(waffle))[0] == 401  # still secure by default
        status, body = await _get(waffle, BEARER)
        assert status == 501
        assert "metrics_disabled" in body
        assert "quart-waffle[metrics]" in body


def test_the_package_imports_without_the_extra() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import quart_waffle, quart_waffle.metrics, quart_waffle.metrics.endpoint\n"
        "from quart_waffle.metrics import available, sync_observer\n"
        "assert not available() and type(sync_observer()).__name__ == 'SyncObserver'\n"
        "assert 'quart_waffle.metrics.prometheus' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_a_dead_process_live_gauges_are_forgotten(tmp_path: Path) -> None:
    code = (
        "from prometheus_client import Counter, Gauge\n"
        "Gauge('g', 'g', multiprocess_mode='liveall').set(1)\n"
        "Counter('c', 'c').inc()\n"
        "import os; print(os.getpid())\n"
    )
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    pid = int(done.stdout)
    assert (tmp_path / f"gauge_liveall_{pid}.db").exists()
    assert forget_dead_workers(str(tmp_path)) == [pid]
    assert not (tmp_path / f"gauge_liveall_{pid}.db").exists()
    assert (tmp_path / f"counter_{pid}.db").exists()  # totals never go down


def test_a_worker_that_stops_removes_its_own_gauges(tmp_path: Path) -> None:
    code = (
        "import os, pathlib\n"
        "from quart_waffle.metrics.prometheus import PrometheusObserver\n"
        "observer = PrometheusObserver()\n"
        "observer.served(3)\n"
        "directory = pathlib.Path(os.environ['PROMETHEUS_MULTIPROC_DIR'])\n"
        "mine = f'gauge_liveall_{os.getpid()}.db'\n"
        "assert (directory / mine).exists()\n"
        "observer.closed()\n"
        "assert not (directory / mine).exists()\n"
    )
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, check=True, timeout=60)


def test_a_multiprocess_directory_not_made_yet_is_made(tmp_path: Path) -> None:
    directory = tmp_path / "not-yet"
    code = (
        "from quart_waffle.metrics import sync_observer\n"
        "assert type(sync_observer()).__name__ == 'PrometheusObserver'\n"
    )
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, check=True, timeout=60)
    assert directory.is_dir()
    assert directory.stat().st_mode & 0o077 == 0
