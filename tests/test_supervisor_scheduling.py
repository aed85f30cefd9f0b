"""Gentle starts (`scheduling`): the rule for leaving ``SCHED_IDLE`` is the kernel's, checked
against the kernel itself in real processes, privileged and not; a process that could not
leave it is never put there."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from quart_waffle.supervisor import scheduling

NOBODY = 65534

# Run in a process of its own: drop to `uid` (after setting RLIMIT_NICE to `limit`), then say
# what `can_leave_idle` predicts and what the kernel does to a child put under SCHED_IDLE.
PROBE = """
import json, os, resource, subprocess, sys
from quart_waffle.supervisor import scheduling  # imported first: nobody may not read it all
uid, limit = int(sys.argv[1]), int(sys.argv[2])
if limit >= 0:
    resource.setrlimit(resource.RLIMIT_NICE, (limit, limit))
if uid >= 0:
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
child = subprocess.Popen(["sleep", "30"])
try:
    scheduling.start_gently(child.pid)
    idle = os.sched_getscheduler(child.pid) == os.SCHED_IDLE
    scheduling.set_policy(child.pid, "SCHED_OTHER")
    back = os.sched_getscheduler(child.pid) == os.SCHED_OTHER
finally:
    child.kill()
print(json.dumps({"predicted": scheduling.can_leave_idle(), "idle": idle, "back": back}))
"""


def probe(uid: int, limit: int) -> dict[str, bool]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(uid), str(limit)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answer: dict[str, bool] = json.loads(done.stdout)
    return answer


def test_this_process_predicts_what_the_kernel_does() -> None:
    answer = probe(-1, -1)
    assert answer["predicted"] == answer["back"]
    assert answer["back"]  # whoever was put under SCHED_IDLE came back
    assert answer["idle"] == answer["predicted"]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_an_unprivileged_user_is_never_put_under_sched_idle() -> None:
    answer = probe(NOBODY, 0)  # no CAP_SYS_NICE, and the default RLIMIT_NICE
    assert answer["predicted"] is False
    assert answer["idle"] is False  # so the worker serves at the normal policy
    assert answer["back"]


@pytest.mark.parametrize(
    ("nice", "limit", "allowed"),
    [(0, 20, True), (5, 15, True), (0, 19, False), (10, 0, False)],
)
def test_an_rlimit_nice_that_permits_the_nice_value_is_enough(
    monkeypatch: pytest.MonkeyPatch, nice: int, limit: int, allowed: bool
) -> None:
    """RLIMIT_NICE cannot be raised in every sandbox, so its arithmetic is checked alone."""
    monkeypatch.setattr(os, "getpriority", lambda *_: nice)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limit, limit))
    monkeypatch.setattr(scheduling, "_has_capability", lambda _: False)
    assert scheduling.can_leave_idle() is allowed
