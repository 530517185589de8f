"""Bad settings and exhausted resources end `gwproactor run` / `twist gwproactor` at once: one line, exit 2.

Every case runs the real command in a child process and checks that it exits with status 2 within a few
seconds, that stderr is one line naming the setting (its environment variable), and that there is no
traceback; then `gwproactor check`, the log formats and the start-failure safety net.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from twisted.logger import eventsFromJSONLogFile

from gwproactor.config import load_settings, parse_dotenv
from gwproactor_test.broker import free_port

REPO = Path(__file__).resolve().parents[1]
#: A config error must end the process this fast (it normally takes about a second: the imports).
QUICK_S = 8.0


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment with valid settings; ``extra`` replaces or removes (value ``None``) entries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GWP_", "XDG_")) and k != "NOTIFY_SOCKET"}
    env.update(
        HOME=str(tmp_path / "home"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
        PYTHONUNBUFFERED="1",
        GWP_LONG_NAME="d1.cfg.child",
        GWP_SHORT_NAME="c",
        GWP_BROKERS__DEFAULT__ENDPOINT=f"tcp:host=127.0.0.1:port={free_port()}",  # nothing listens: never connects
        GWP_LINKS__PARENT__PEER_LONG_NAME="d1.cfg",
        GWP_LINKS__PARENT__PEER_SHORT_NAME="p",
        GWP_STORE__DIRECTORY=str(tmp_path / "store"),
    )
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def gwproactor(args: list[str], env: dict[str, str], timeout: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gwproactor.cli", *args], env=env, cwd=Path(env["HOME"]).parent,
                            capture_output=True, text=True, timeout=timeout, check=False)
    return result, time.monotonic() - start


def assert_one_line_exit_2(result: subprocess.CompletedProcess, elapsed: float, setting: str, *phrases: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert elapsed < QUICK_S, f"took {elapsed:.1f} s"
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gwproactor: ") and setting in lines[0], lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def trust_dir(tmp_path: Path) -> Path:
    d = tmp_path / "trust"
    d.mkdir(exist_ok=True)
    (d / "ca.pem").write_text("(not read: the missing file is found first)")
    return d


ENDPOINT = "GWP_BROKERS__DEFAULT__ENDPOINT"


@pytest.mark.parametrize(
    "case",
    ["tlz", "missing_port", "port_abc", "missing_cert_in_tls", "missing_trust_dir", "tls_ca_file_field",
     "store_is_file", "store_under_file", "app_not_proactor", "app_needs_args", "app_not_importable"],
)
def test_bad_setting_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    """Each bad setting: `gwproactor run` exits 2 within seconds, one stderr line names the setting, no traceback."""
    app = "gwproactor.proactor:Proactor"
    (tmp_path / "home").mkdir()
    if case == "tlz":
        env, setting, phrases = base_env(tmp_path, **{ENDPOINT: "tlz:host=127.0.0.1:port=8883"}), ENDPOINT, \
            ["unknown endpoint type 'tlz'", "tls:"]
    elif case == "missing_port":
        env, setting, phrases = base_env(tmp_path, **{ENDPOINT: "tcp:host=127.0.0.1"}), ENDPOINT, ["no port"]
    elif case == "port_abc":
        env, setting, phrases = base_env(tmp_path, **{ENDPOINT: "tcp:host=127.0.0.1:port=abc"}), ENDPOINT, \
            ["port='abc' is not a whole number"]
    elif case == "missing_cert_in_tls":
        missing = tmp_path / "missing.crt"
        value = f"tls:host=127.0.0.1:port=8883:trustRoots={trust_dir(tmp_path)}:certificate={missing}"
        env, setting, phrases = base_env(tmp_path, **{ENDPOINT: value}), ENDPOINT, \
            [f"certificate={missing}: no such file"]
    elif case == "missing_trust_dir":
        value = f"tls:host=127.0.0.1:port=8883:trustRoots={tmp_path / 'nope'}"
        env, setting, phrases = base_env(tmp_path, **{ENDPOINT: value}), ENDPOINT, ["no such directory"]
    elif case == "tls_ca_file_field":
        env = base_env(tmp_path, **{ENDPOINT: None, "GWP_BROKERS__DEFAULT__TLS__CA_FILE": str(tmp_path / "ca.crt")})
        setting, phrases = "GWP_BROKERS__DEFAULT__TLS__CA_FILE", ["no such file"]
    elif case == "store_is_file":
        (tmp_path / "a-file").write_text("x")
        env = base_env(tmp_path, GWP_STORE__DIRECTORY=str(tmp_path / "a-file"))
        setting, phrases = "GWP_STORE__DIRECTORY", ["is a file, not a directory"]
    elif case == "store_under_file":
        (tmp_path / "a-file").write_text("x")
        env = base_env(tmp_path, GWP_STORE__DIRECTORY=str(tmp_path / "a-file" / "events"))
        setting, phrases = "GWP_STORE__DIRECTORY", ["cannot be created", "is a file"]
    elif case == "app_not_proactor":
        env, app, setting, phrases = base_env(tmp_path), "gwproactor.config:ProactorSettings", "--app", \
            ["not a Proactor subclass"]
    elif case == "app_needs_args":
        env, app, setting, phrases = base_env(tmp_path), "gwproactor.config:load_settings", "--app", \
            ["not a Proactor factory", "needs prefix"]
    else:
        env, app, setting, phrases = base_env(tmp_path), "no_such_package.app:Scada", "--app", ["cannot import"]
    result, elapsed = gwproactor(["run", "--app", app], env)
    assert_one_line_exit_2(result, elapsed, setting, *phrases)
    if case.startswith(("tlz", "missing", "port", "tls")):
        assert not (tmp_path / "store").exists(), "nothing started: the store was not even created"


def test_store_locked_by_another_process_names_its_pid(tmp_path: Path) -> None:
    """A store held by another process: exit 2 at once, one line naming GWP_STORE__DIRECTORY and the holder's pid."""
    (tmp_path / "home").mkdir()
    store = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from gwproactor.store import FileEventStore;"
         "s = FileEventStore.open(sys.argv[1]); print('locked', flush=True); sys.stdin.read()", str(store)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result, elapsed = gwproactor(["run", "--app", "gwproactor.proactor:Proactor"], base_env(tmp_path))
        assert_one_line_exit_2(result, elapsed, "GWP_STORE__DIRECTORY", f"in use by process {holder.pid}")
        check, _ = gwproactor(["check", "--app", "gwproactor.proactor:Proactor"], base_env(tmp_path))
        assert check.returncode == 0, check.stderr
        assert f"in use by process {holder.pid}" in check.stderr
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_twist_plugin_exits_2_with_one_line(tmp_path: Path) -> None:
    """`twist gwproactor` with a bad endpoint string exits 2 at once with the same one line."""
    (tmp_path / "home").mkdir()
    env = base_env(tmp_path, **{ENDPOINT: "tcp:host=127.0.0.1:port=abc"})
    start = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).parent / "twist"), "gwproactor", "--app",
                             "gwproactor.proactor:Proactor"], env=env, capture_output=True, text=True, timeout=30,
                            check=False, cwd=str(tmp_path))
    assert_one_line_exit_2(result, time.monotonic() - start, ENDPOINT, "port='abc'")


def test_config_error_tells_systemd_the_reason(tmp_path: Path) -> None:
    """Under systemd ($NOTIFY_SOCKET) a config error sends STATUS= with the reason before exiting 2."""
    (tmp_path / "home").mkdir()
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        env = base_env(tmp_path, NOTIFY_SOCKET=path, **{ENDPOINT: "tlz:host=127.0.0.1:port=1"})
        result, elapsed = gwproactor(["run", "--app", "gwproactor.proactor:Proactor"], env)
        assert_one_line_exit_2(result, elapsed, ENDPOINT)
        sock.setblocking(False)
        datagram = sock.recv(4096).decode()
    finally:
        sock.close()
    assert datagram.startswith(f"STATUS=configuration error: {ENDPOINT}="), datagram
    assert "READY=1" not in datagram


def test_failing_start_shuts_down_instead_of_staying_half_started(tmp_path: Path) -> None:
    """An application whose start raises after its links started: the runner shuts it down and exits 1 quickly."""
    (tmp_path / "home").mkdir()
    result, elapsed = gwproactor(["run", "--app", "tests.runner_apps:FailingStart"], base_env(tmp_path))
    assert result.returncode == 1, result.stderr
    assert elapsed < QUICK_S + 5, f"took {elapsed:.1f} s"
    assert "failed to start; shutting down with exit status 1" in result.stderr
    assert "the pump driver is missing" in result.stderr
    assert "d1.cfg.child stopped" in result.stderr


# --- gwproactor check ----------------------------------------------------------------------------


def test_check_ok_prints_settings_masked_and_starts_nothing(tmp_path: Path) -> None:
    """`gwproactor check` exits 0, prints loadable .env lines with the password masked, and creates nothing."""
    (tmp_path / "home").mkdir()
    env = base_env(tmp_path, GWP_BROKERS__DEFAULT__USERNAME="scada", GWP_BROKERS__DEFAULT__PASSWORD="hunter2")
    result, elapsed = gwproactor(["check", "--app", "gwproactor.proactor:Proactor"], env)
    assert result.returncode == 0, result.stderr
    assert elapsed < QUICK_S
    assert "hunter2" not in result.stdout + result.stderr
    assert "GWP_BROKERS__DEFAULT__PASSWORD=***" in result.stdout.splitlines()
    assert "GWP_LINKS__PARENT__PEER_LONG_NAME=d1.cfg" in result.stdout.splitlines()
    assert result.stderr.strip().splitlines()[-1].startswith("gwproactor: settings OK")
    assert not (tmp_path / "store").exists()
    shown = parse_dotenv(result.stdout)
    reloaded = load_settings(prefix="GWP", env={**shown, "HOME": env["HOME"]})
    expected = load_settings(prefix="GWP", env={k: v for k, v in env.items() if k.startswith("GWP_") or k == "HOME"})
    assert reloaded.brokers["default"].password == "***"
    assert reloaded.to_dict() == expected.to_dict()


def test_check_json_masks_secrets(tmp_path: Path) -> None:
    """`gwproactor check --json` prints the settings as JSON, the password as ***."""
    (tmp_path / "home").mkdir()
    env = base_env(tmp_path, GWP_BROKERS__DEFAULT__PASSWORD="hunter2")
    result, _ = gwproactor(["check", "--json", "--app", "gwproactor.proactor:Proactor"], env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["brokers"]["default"]["password"] == "***" and "hunter2" not in result.stdout
    assert data["store"]["directory"] == str(tmp_path / "store")


def test_check_failing_exits_2_naming_each_setting(tmp_path: Path) -> None:
    """`gwproactor check` with two bad settings exits 2 with one line for each, naming its variable."""
    (tmp_path / "home").mkdir()
    (tmp_path / "a-file").write_text("x")
    env = base_env(tmp_path, GWP_STORE__DIRECTORY=str(tmp_path / "a-file"), **{ENDPOINT: "tcp:host=h:port=abc"})
    result, elapsed = gwproactor(["check", "--app", "gwproactor.proactor:Proactor"], env)
    assert result.returncode == 2 and elapsed < QUICK_S, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("gwproactor: GWP_")]
    assert [line.split("=")[0] for line in errors] == ["gwproactor: " + ENDPOINT, "gwproactor: GWP_STORE__DIRECTORY"]
    assert "Traceback" not in result.stderr


def test_check_warns_about_no_links(tmp_path: Path) -> None:
    """`gwproactor check` of settings without links exits 0 with a warning that says how to add one."""
    (tmp_path / "home").mkdir()
    env = base_env(tmp_path, GWP_LINKS__PARENT__PEER_LONG_NAME=None, GWP_LINKS__PARENT__PEER_SHORT_NAME=None)
    result, _ = gwproactor(["check", "--app", "gwproactor.proactor:Proactor"], env)
    assert result.returncode == 0, result.stderr
    assert "gwproactor: warning: d1.cfg.child has no links" in result.stderr
    assert "GWP_LINKS__<NAME>__PEER_LONG_NAME" in result.stderr


# --- a whole run: warnings and log formats --------------------------------------------------------

TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} \[[^\]]+\] ")


def test_no_links_warning_at_start(tmp_path: Path) -> None:
    """A proactor without links starts, and logs a warning saying so."""
    (tmp_path / "home").mkdir()
    env = base_env(tmp_path, GWP_LINKS__PARENT__PEER_LONG_NAME=None, GWP_LINKS__PARENT__PEER_SHORT_NAME=None)
    result, _ = gwproactor(["run", "--app", "tests.runner_apps:StartThenStop"], env)
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"#warn\] d1\.cfg\.child has no links", result.stderr)) == 1, result.stderr
    assert "d1.cfg.child stopped" in result.stderr


def test_text_log_has_millisecond_timestamps(tmp_path: Path) -> None:
    """`gwproactor run` writes one text line per event with a millisecond timestamp."""
    (tmp_path / "home").mkdir()
    result, _ = gwproactor(["run", "--app", "tests.runner_apps:StartThenStop"], base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith("\t")]
    assert len(lines) >= 5, result.stderr
    assert all(TEXT_LINE.match(line) for line in lines), result.stderr
    assert any("link parent: not_started -> connecting" in line for line in lines)


def test_json_log_one_object_per_line_with_fields(tmp_path: Path) -> None:
    """`gwproactor run --log-format json` writes one parseable JSON object per line with the structured fields."""
    (tmp_path / "home").mkdir()
    result, _ = gwproactor(["run", "--log-format", "json", "--app", "tests.runner_apps:StartThenStop"],
                           base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) >= 5 and all(isinstance(e, dict) for e in events)
    transition = next(e for e in events if e.get("log_format", "").startswith("link {link_name}"))
    assert (transition["link_name"], transition["old"], transition["new"]) == ("parent", "not_started", "connecting")
    assert transition["log_level"]["name"] == "info"
    assert transition["log_namespace"].startswith("gwproactor.link")
    assert transition["log_text"] == "link parent: not_started -> connecting on start"
    assert isinstance(transition["log_time"], float)
    assert any(e.get("log_text") == "d1.cfg.child stopped" for e in events)
    assert len(list(eventsFromJSONLogFile(StringIO(result.stderr)))) == len(events)


def test_log_format_is_checked(tmp_path: Path) -> None:
    """An unknown --log-format is a usage error (exit 2)."""
    (tmp_path / "home").mkdir()
    result, _ = gwproactor(["run", "--log-format", "xml", "--app", "gwproactor.proactor:Proactor"], base_env(tmp_path))
    assert result.returncode == 2 and "--log-format" in result.stderr


def test_run_under_systemd_sends_ready_then_stopping(tmp_path: Path) -> None:
    """`gwproactor run` under $NOTIFY_SOCKET attaches systemd: READY=1 once started, then STOPPING=1."""
    (tmp_path / "home").mkdir()
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        env = base_env(tmp_path, NOTIFY_SOCKET=path)
        result, _ = gwproactor(["run", "--app", "tests.runner_apps:StartThenStop"], env)
        assert result.returncode == 0, result.stderr
        sock.setblocking(False)
        datagrams = []
        while True:
            try:
                datagrams.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        sock.close()
    ready = [i for i, d in enumerate(datagrams) if "READY=1" in d]
    stopping = [i for i, d in enumerate(datagrams) if "STOPPING=1" in d]
    assert ready and stopping and ready[0] < stopping[0], datagrams
