"""``aicoder service install|uninstall|status``: the systemd user unit."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from aicoderd import execute
from aicoderd.errors import CommandError

UNIT_NAME = "aicoderd.service"

# systemd 252 (Debian 12) has no Type=notify-reload, so reload is ExecReload + SIGHUP.
# Namespace sandboxing (ProtectSystem=, PrivateTmp=…) implies PrivateUsers= in user units and is
# left out on purpose; the seccomp-based options below work in user units.
UNIT_TEMPLATE = """\
[Unit]
Description=aicoderd: keeps a personal code model fresh
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=notify
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec=60
Restart=on-failure
RestartSec=5s
TimeoutStartSec=120
TimeoutStopSec=120
KillMode=mixed
RuntimeDirectory=aicoderd
RuntimeDirectoryMode=0700
Environment=PYTHONUNBUFFERED=1
SyslogIdentifier=aicoderd
# Training yields to the user: lower CPU and disk weight for the whole service (heavy job
# children lower their own priority further: jobs.nice, jobs.idle_io).
Nice=10
CPUWeight=20
IOWeight=20
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6

[Install]
WantedBy=default.target
"""


def render(exec_start: str) -> str:
    return UNIT_TEMPLATE.format(exec_start=exec_start)


def this_exec_start(config: Path | None) -> str:
    """Run the daemon with the interpreter (and so the virtualenv) this CLI runs in."""
    cmd = f"{sys.executable} -m aicoderd"
    return cmd + (f" --config {config.expanduser().absolute()}" if config else "")


def unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def install(config: Path | None, start: bool = True) -> tuple[int, list[str]]:
    """Write the unit, reload systemd, enable and start it: exit status and lines for the
    user, each saying what was done or what failed."""
    path = unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(this_exec_start(config)))
    lines = [f"wrote {path}"]
    if not start:
        return 0, lines
    try:
        execute.run(["systemctl", "--user", "daemon-reload"])
        execute.run(["systemctl", "--user", "enable", "--now", UNIT_NAME])
    except CommandError as exc:
        return 1, [*lines, *_no_manager(exc, "enable and start it")]
    lines.append("enabled and started aicoderd.service")
    return 0, lines + linger_advice()


def _no_manager(exc: CommandError, what: str) -> list[str]:
    return [
        f"could not {what}: {exc}",
        "the systemd user manager did not answer (no user session bus: log in through a"
        " session, or run `loginctl enable-linger $USER`); meanwhile `aicoderd` runs the daemon"
        " in the foreground",
    ]


def linger_advice() -> list[str]:
    user = getpass.getuser()
    try:
        out = execute.run(["loginctl", "show-user", user, "-p", "Linger"], timeout=10)
    except CommandError:
        return []
    if out.strip() == "Linger=no":
        return [
            f"note: run `loginctl enable-linger {user}` so aicoderd keeps running while "
            "you are logged out"
        ]
    return []


def uninstall() -> tuple[int, list[str]]:
    path = unit_path()
    code, lines = 0, []
    try:
        execute.run(["systemctl", "--user", "disable", "--now", UNIT_NAME])
        lines.append("stopped and disabled aicoderd.service")
    except CommandError as exc:
        code = 1
        lines += _no_manager(exc, "stop and disable aicoderd.service")
    if path.exists():
        path.unlink()
        lines.append(f"removed {path}")
        if code == 0:
            execute.run(["systemctl", "--user", "daemon-reload"], check=False)
    else:
        lines.append(f"{path} was not installed")
    return code, lines


def status() -> tuple[int, list[str]]:
    path = unit_path()
    if not path.exists():
        return 3, [f"not installed ({path} does not exist); run `aicoder service install`"]
    try:
        out = execute.run(["systemctl", "--user", "status", "--no-pager", UNIT_NAME], check=False)
    except CommandError as exc:
        return 1, [f"installed at {path}", *_no_manager(exc, "ask its state")]
    if "Failed to connect to bus" in out or "Failed to connect to user" in out:
        return 1, [f"installed at {path}", f"could not ask its state: {out.strip()}"]
    return 0, [out]
