"""Settings metrics of real workers: ``hypercorn -w 2`` on the redis channel in
prometheus_client's multiprocess mode; a write, then a scrape of any one worker
shows every worker. The supervisor's own metrics and a killed worker:
test_metrics_supervisor.py."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import REDIS_URL, Deployment, http_request
from tests.conftest import require

ADMIN_TOKEN = "metrics-admin-token-0123456789"
METRICS_TOKEN = "metrics-scraper-token-0123456789"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def worker_env(tmp_path: Path, multiproc_dir: Path | None) -> dict[str, str]:
    """examples.app on SQLite and a fresh redis channel, the admin and the metrics on."""
    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
        "WAFFLE_WATCHTYPE": "redis",
        "WAFFLE_REDIS_URL": REDIS_URL,
        "WAFFLE_REDIS_CHANNEL": f"waffle-metrics-{os.urandom(6).hex()}",
        "WAFFLE_SYNC_KEY": "metrics-test-sync-key",
        "WAFFLE_CHECK_INTERVAL": "60",
        "WAFFLE_ADMIN_TOKEN": ADMIN_TOKEN,
        "WAFFLE_METRICS_TOKEN": METRICS_TOKEN,
    }
    if multiproc_dir is not None:
        multiproc_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    return env


def parse(text: str) -> Samples:
    """Every sample: (name, labels) to value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def per_pid(samples: Samples, name: str) -> dict[int, float]:
    """A ``liveall`` gauge's value for each worker pid."""
    return {
        int(dict(labels)["pid"]): value
        for (sample, labels), value in samples.items()
        if sample == name and "pid" in dict(labels)
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples that carry ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (sample, have), value in samples.items() if sample == name and wanted <= have
    )


async def scrape(port: int, headers: dict[str, str] | None = SCRAPER) -> tuple[int, str]:
    status, body = await http_request(port, "GET", "/waffle/metrics", headers=headers)
    return status, body.decode()


async def scrape_until(
    port: int, check: str, test: Callable[[Samples], bool], within: float = 20.0
) -> Samples:
    """Scrape until ``test(samples)`` holds; fail naming ``check`` with the last scrape."""
    deadline = time.monotonic() + within
    while True:
        status, body = await scrape(port)
        assert status == 200, body
        samples = parse(body)
        if test(samples):
            return samples
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {check}\n{body}")
        await asyncio.sleep(0.1)


@pytest.fixture(name="deployment")
async def _deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    require("Redis")
    env = worker_env(tmp_path, tmp_path / "prometheus")
    async with Deployment(env, tmp_path / "hypercorn.log", workers=2) as deployment:
        yield deployment


async def test_a_write_shows_in_every_worker_metrics(deployment: Deployment) -> None:
    pids = await deployment.worker_pids()
    samples = await scrape_until(
        deployment.port,
        "every worker reports its revision and a connected channel",
        lambda s: (
            set(per_pid(s, "quart_waffle_revision")) == pids
            and set(per_pid(s, "quart_waffle_channel_up").values()) == {1.0}
        ),
    )
    before = {
        "direct": total(samples, "quart_waffle_changes_applied_directly_total"),
        "propagation": total(samples, "quart_waffle_propagation_seconds_count"),
    }
    status, body = await http_request(
        deployment.port,
        "PUT",
        "/waffle/api/settings/THEME",
        {"value": "dark"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert status == 200, body
    served = await deployment.until_all_serve(
        lambda answer: answer["settings"]["THEME"] == "dark", pids
    )
    revision = max(answer["revision"] for answer in served.values())
    samples = await scrape_until(
        deployment.port,
        f"every worker serves revision {revision}",
        lambda s: per_pid(s, "quart_waffle_revision") == dict.fromkeys(pids, float(revision)),
    )
    # the other worker applied the change from its message, and timed it
    assert total(samples, "quart_waffle_changes_applied_directly_total") == before["direct"] + 1
    assert total(samples, "quart_waffle_propagation_seconds_count") == before["propagation"] + 1
    assert total(samples, "quart_waffle_propagation_seconds_bucket", le="+Inf") >= 1
    assert per_pid(samples, "quart_waffle_revision_lag") == dict.fromkeys(pids, 0.0)
    assert ("quart_waffle_sync_errors_total", frozenset({("kind", "channel")})) in samples


async def test_the_endpoint_refuses_a_scraper_without_credentials(
    deployment: Deployment,
) -> None:
    status, body = await scrape(deployment.port, headers=None)
    assert status == 401
    assert "quart_waffle" not in body
    status, body = await scrape(deployment.port, {"Authorization": "Bearer wrong-but-long-enough"})
    assert status == 401
    assert "quart_waffle_revision" not in body
    status, body = await scrape(deployment.port)  # the control
    assert status == 200
    assert "quart_waffle_revision" in body
