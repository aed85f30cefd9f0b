"""Prometheus metrics of each worker's settings sync (the ``metrics`` extra).

With ``prometheus_client`` installed, every worker counts what its sync does
(:mod:`.prometheus`) and the admin serves every worker's metrics at
``<admin prefix>/metrics`` (:mod:`.endpoint`). Without it the sync is told
nobody (:class:`SyncObserver` does nothing) and the endpoint says how to turn
metrics on. See ``docs/metrics.md``.
"""

from __future__ import annotations

import os

from ..sync.observer import SyncObserver

INSTALL_HINT = (
    "Metrics are disabled: prometheus_client is not installed. Install the extra:"
    " pip install 'quart-waffle[metrics]'."
)


class MetricsDisabledError(RuntimeError):
    """The ``metrics`` extra (``prometheus_client``) is not installed."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def available() -> bool:
    """Whether ``prometheus_client`` can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def sync_observer() -> SyncObserver:
    """The observer a worker's sync reports to: the Prometheus one with the
    extra, else one that does nothing."""
    if not available():
        return SyncObserver()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # prometheus_client writes there as soon as the metrics exist: a directory
        # not made yet would stop the worker from starting
        os.makedirs(directory, mode=0o700, exist_ok=True)
    from .prometheus import PrometheusObserver

    return PrometheusObserver()


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format and its content type: of every
    worker on this host when ``PROMETHEUS_MULTIPROC_DIR`` is set, else of this
    process. Raises :class:`MetricsDisabledError` without the extra.

    Use it to serve the metrics on a route of your own (the admin serves them
    at ``<admin prefix>/metrics``)::

        @app.get("/internal/metrics")
        async def metrics():
            body, content_type = exposition()
            return body, 200, {"Content-Type": content_type}
    """
    if not available():
        raise MetricsDisabledError
    from .prometheus import exposition as generate

    return generate()


__all__ = ["INSTALL_HINT", "MetricsDisabledError", "available", "exposition", "sync_observer"]
