"""Start the demo: examples/app.py under 4 workers (``quart-waffle serve``) on
the embedded default (a SQLite file and the file watcher), no server needed.

Run it with ``make demo``. Environment: DEMO_PORT (default 8000),
WAFFLE_ADMIN_TOKEN (default: generated once and kept in instance/demo/).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance" / "demo"
SUPERVISOR = Path(sys.executable).parent / "quart-waffle"


def kept_secret(name: str) -> str:
    """A random secret generated on the first run and reused afterwards."""
    path = INSTANCE / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> None:
    INSTANCE.mkdir(parents=True, exist_ok=True)
    port = os.environ.get("DEMO_PORT", "8000")
    token = os.environ.get("WAFFLE_ADMIN_TOKEN") or kept_secret("admin-token")
    environment = {
        **os.environ,
        "WAFFLE_INSTANCE_PATH": str(INSTANCE),
        "WAFFLE_DATABASE_URL": f"sqlite:///{INSTANCE / 'demo.db'}",
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(INSTANCE / "demo.revision"),
        "WAFFLE_ADMIN_TOKEN": token,
        "QUART_SECRET_KEY": kept_secret("secret-key"),
    }
    url = f"http://127.0.0.1:{port}"
    control = INSTANCE / "control.sock"
    print(
        f"""
quart-waffle demo: 4 workers on {url}  (SQLite: {INSTANCE / "demo.db"})

  Which worker answers, and what it serves:   curl {url}/whoami
  The admin page:                             {url}/waffle/
  Admin token:                                {token}
  Change a setting on every worker:
    curl -X PUT -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\
         -d '{{"value": "Hi from the admin API"}}' {url}/waffle/api/settings/GREETING

  Deploy new code with zero failed requests (rolling reload of the workers):
    {SUPERVISOR} reload --control-socket {control}

Press Ctrl+C to stop.
""",
        flush=True,
    )
    options = ["-w", "4", "-b", f"127.0.0.1:{port}", "--control-socket", str(control)]
    os.chdir(ROOT)
    os.execve(SUPERVISOR, [str(SUPERVISOR), "serve", "examples.app:app", *options], environment)


if __name__ == "__main__":
    main()
