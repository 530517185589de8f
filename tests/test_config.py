"""Tests of gwproactor.config: settings classes, the env/.env loader, XDG paths and redaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.logger import LogLevel

from gwproactor.config import (
    AppPaths,
    BrokerSettings,
    HTTPSettings,
    InvalidSettings,
    LinkSettings,
    LoggingSettings,
    ProactorSettings,
    StoreSettings,
    TLSSettings,
    load_settings,
    parse_dotenv,
)
from gwproactor.errors import ConfigError

MiB = 1024 * 1024
NAMES = {"SCADA_LONG_NAME": "d1.isone.ct.orange1.scada", "SCADA_SHORT_NAME": "s", "HOME": "/home/pi"}
PARENT = {
    "SCADA_LINKS__PARENT__PEER_LONG_NAME": "d1.isone.ct.orange1",
    "SCADA_LINKS__PARENT__PEER_SHORT_NAME": "a",
}


def load(extra: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return load_settings(prefix="SCADA", env={**NAMES, **(extra or {})}, **kwargs)


def problems(extra: dict[str, str], **kwargs: Any) -> tuple[str, ...]:
    with pytest.raises(InvalidSettings) as info:
        load(extra, **kwargs)
    return info.value.problems


def only_problem(extra: dict[str, str], **kwargs: Any) -> str:
    found = problems(extra, **kwargs)
    assert len(found) == 1, found
    return found[0]


# --- defaults -----------------------------------------------------------------------------


def test_class_defaults() -> None:
    """Every settings class has the documented defaults."""
    s = ProactorSettings(long_name="a.b", short_name="s")
    assert s.app_name == "gwproactor"
    assert s.brokers == {"default": BrokerSettings()}
    assert s.links == {}
    assert s.shutdown_grace_s == 5.0
    assert s.service_stop_timeout_s == 5.0
    assert s.http == HTTPSettings(enabled=False, host="127.0.0.1", port=8080)
    b = BrokerSettings()
    assert (b.endpoint, b.host, b.port, b.tls, b.username, b.password, b.client_id) == (
        None, "localhost", 1883, None, None, None, None,
    )
    assert (b.keepalive_s, b.backoff_initial_s, b.backoff_cap_s, b.connect_timeout_s) == (60.0, 0.5, 60.0, 10.0)
    assert TLSSettings() == TLSSettings(ca_file=None, cert_file=None, key_file=None, check_hostname=True)
    link = LinkSettings(peer_long_name="p.q", peer_short_name="a")
    assert (link.broker, link.upstream, link.ack_timeout_s, link.heartbeat_s) == ("default", False, 5.0, 10.0)
    assert (link.receive_deadline_s, link.window, link.qos) == (30.0, 50, 0)
    st = StoreSettings()
    assert (st.directory, st.max_bytes, st.full_policy, st.sync_policy) == (None, 512 * MiB, "drop_oldest", "group")
    assert (st.group_commit_ms, st.segment_bytes, st.received_window) == (10.0, 4 * MiB, 10_000)
    lg = LoggingSettings()
    assert (lg.base_level, lg.levels) == ("INFO", {})
    assert not hasattr(lg, "log_dir")  # removed: nothing wrote logs there


def test_settings_are_frozen() -> None:
    """Settings instances cannot be mutated."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        BrokerSettings().host = "x"  # type: ignore[misc]


def test_load_minimal_env_gives_defaults_and_xdg_dirs() -> None:
    """Loading with only the names gives the defaults, with the store (per proactor) under the XDG state dir."""
    s = load()
    assert s.long_name == "d1.isone.ct.orange1.scada" and s.short_name == "s"
    assert s.brokers == {"default": BrokerSettings()}
    assert s.store.directory == Path("/home/pi/.local/state/gwproactor/d1.isone.ct.orange1.scada/event-store")
    assert attrs.evolve(s.store, directory=None) == StoreSettings()


def test_explicit_dirs_are_kept() -> None:
    """resolve_paths keeps directories that are set."""
    s = load({"SCADA_STORE__DIRECTORY": "/var/lib/scada/events"})
    assert s.store.directory == Path("/var/lib/scada/events")


def test_app_name_moves_dirs() -> None:
    """The application name picks the XDG subdirectory."""
    s = load({"SCADA_APP_NAME": "scada", "XDG_STATE_HOME": "/state"})
    assert s.store.directory == Path("/state/scada/d1.isone.ct.orange1.scada/event-store")


# --- conversions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True),
     ("false", False), ("0", False), ("No", False), ("off", False), (" true ", True)],
)
def test_bool_words(raw: str, expected: bool) -> None:
    """Booleans accept true/false, 1/0, yes/no, on/off in any case."""
    assert load({"SCADA_HTTP__ENABLED": raw}).http.enabled is expected


def test_str_int_float() -> None:
    """str is kept as given, int accepts underscores, float accepts exponents."""
    s = load({"SCADA_BROKERS__DEFAULT__HOST": "mqtt.example.com", "SCADA_HTTP__PORT": "8_081",
              "SCADA_SHUTDOWN_GRACE_S": "2.5e0", "SCADA_BROKERS__DEFAULT__CLIENT_ID": "Scada-1",
              "SCADA_SERVICE_STOP_TIMEOUT_S": "12"})
    assert s.brokers["default"].host == "mqtt.example.com"
    assert s.brokers["default"].client_id == "Scada-1"
    assert s.http.port == 8081
    assert s.shutdown_grace_s == 2.5
    assert s.service_stop_timeout_s == 12.0


def test_path_expands_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Path values expand ~."""
    monkeypatch.setenv("HOME", "/home/tester")
    assert load({"SCADA_STORE__DIRECTORY": "~/events"}).store.directory == Path("/home/tester/events")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("4096", 4096), ("1_000", 1000), ("64KiB", 64 * 1024), ("64k", 64 * 1024), ("512MiB", 512 * MiB),
     ("512m", 512 * MiB), ("1GB", 10**9), ("2 MB", 2 * 10**6), ("1GiB", 1024 * MiB)],
)
def test_byte_sizes(raw: str, expected: int) -> None:
    """Byte-count fields accept plain integers and K/M/G suffixes (xiB and x binary, xB decimal)."""
    assert load({"SCADA_STORE__MAX_BYTES": raw, "SCADA_STORE__SEGMENT_BYTES": "1"}).store.max_bytes == expected


def test_literal_is_case_insensitive() -> None:
    """Literal choices match case-insensitively and keep the canonical spelling."""
    s = load({"SCADA_STORE__SYNC_POLICY": "ALWAYS", "SCADA_STORE__FULL_POLICY": "Reject_New",
              "SCADA_LOGGING__BASE_LEVEL": "debug"})
    assert (s.store.sync_policy, s.store.full_policy, s.logging.base_level) == ("always", "reject_new", "DEBUG")


def test_empty_optional_is_none() -> None:
    """An empty value for an optional field means None."""
    s = load({"SCADA_BROKERS__DEFAULT__USERNAME": "", "SCADA_BROKERS__DEFAULT__ENDPOINT": ""})
    assert s.brokers["default"].username is None and s.brokers["default"].endpoint is None


def test_level_dict_as_pairs_and_entries() -> None:
    """Log levels load from 'a=L,b=L' and from per-category variables; categories are lower-cased."""
    s = load({"SCADA_LOGGING__LEVELS": "io_loop=debug, Comm_Event=WARNING",
              "SCADA_LOGGING__LEVELS__LIFECYCLE": "error"})
    assert s.logging.levels == {"io_loop": "DEBUG", "comm_event": "WARNING", "lifecycle": "ERROR"}
    assert s.logging.level_for("io_loop") == "DEBUG"
    assert s.logging.level_for("message_summary") == "INFO"
    assert s.logging.log_level_for("comm_event") is LogLevel.warn
    assert s.logging.log_level_for() is LogLevel.info


def test_tls_enabled_by_flag() -> None:
    """BROKER__TLS=true enables TLS with the defaults (system trust store)."""
    s = load({"SCADA_BROKERS__DEFAULT__TLS": "true"})
    assert s.brokers["default"].tls == TLSSettings()


def test_tls_enabled_by_a_field(tmp_path: Path) -> None:
    """Any TLS field enables TLS; file fields must name existing files."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = load({"SCADA_BROKERS__DEFAULT__TLS__CA_FILE": str(ca), "SCADA_BROKERS__DEFAULT__TLS__CHECK_HOSTNAME": "no"})
    assert s.brokers["default"].tls == TLSSettings(ca_file=ca, check_hostname=False)


def test_tls_false_is_none() -> None:
    """BROKER__TLS=false leaves TLS off."""
    assert load({"SCADA_BROKERS__DEFAULT__TLS": "off"}).brokers["default"].tls is None


# --- nesting into dicts -------------------------------------------------------------------


def test_dict_entries_created_and_merged() -> None:
    """Dict entries are created on demand with class defaults; the default broker is updated in place."""
    s = load({**PARENT, "SCADA_BROKERS__CLOUD__HOST": "cloud.example.com", "SCADA_BROKERS__CLOUD__PORT": "8883",
              "SCADA_BROKERS__DEFAULT__PORT": "1884", "SCADA_LINKS__PARENT__BROKER": "CLOUD",
              "SCADA_LINKS__PARENT__UPSTREAM": "true", "SCADA_LINKS__PARENT__RECEIVE_DEADLINE_S": "20"})
    assert s.brokers == {
        "default": BrokerSettings(port=1884),
        "cloud": BrokerSettings(host="cloud.example.com", port=8883),
    }
    assert s.links == {"parent": LinkSettings(peer_long_name="d1.isone.ct.orange1", peer_short_name="a",
                                              broker="cloud", upstream=True, receive_deadline_s=20.0)}


def test_dict_keys_are_lower_cased() -> None:
    """Entry names taken from variable names are lower-cased."""
    s = load({"SCADA_LINKS__Parent__PEER_LONG_NAME": "p", "SCADA_LINKS__PARENT__PEER_SHORT_NAME": "a"})
    assert list(s.links) == ["parent"]


@attrs.define(frozen=True, kw_only=True)
class Pump:
    rpm: int = 100


@attrs.define(frozen=True, kw_only=True)
class AppSettings(ProactorSettings):
    pump: Pump = attrs.field(factory=Pump)
    site: str = "home"


def test_subclass_fields_load() -> None:
    """An application's subclass with extra fields (and its own nested classes) loads the same way."""
    s = load({"SCADA_PUMP__RPM": "1200", "SCADA_SITE": "barn"}, cls=AppSettings)
    assert (s.pump.rpm, s.site) == (1200, "barn")
    assert s.store.directory is not None


# --- .env -----------------------------------------------------------------------------------


DOTENV = """\
# a comment
SCADA_LONG_NAME=from.dotenv

export SCADA_BROKERS__DEFAULT__HOST = dotenv.example.com   # trailing comment
SCADA_BROKERS__DEFAULT__USERNAME='it''s'
SCADA_BROKERS__DEFAULT__PASSWORD="p#ss \\"word\\""
OTHER_APP_THING=ignored
"""


def test_parse_dotenv_syntax() -> None:
    """The .env parser handles comments, export, spaces, inline comments and both quote styles."""
    assert parse_dotenv("A=1\nexport B = two words # c\nC='x # y'\nD=\"a\\nb\\\\\"\nE=\n#F=1\nG=a#b\n") == {
        "A": "1", "B": "two words", "C": "x # y", "D": "a\nb\\", "E": "", "G": "a#b",
    }


def test_dotenv_loaded_and_env_wins(tmp_path: Path) -> None:
    """A .env file supplies values; the real environment beats it; unrelated keys are ignored."""
    path = tmp_path / ".env"
    path.write_text(DOTENV.replace("'it''s'", "'its'"))
    s = load_settings(prefix="SCADA", env={"SCADA_SHORT_NAME": "s", "SCADA_BROKERS__DEFAULT__HOST": "env.example.com"},
                      dotenv=path)
    assert s.long_name == "from.dotenv"
    assert s.brokers["default"].host == "env.example.com"
    assert s.brokers["default"].username == "its"
    assert s.brokers["default"].password == 'p#ss "word"'


def test_overrides_beat_env(tmp_path: Path) -> None:
    """Keyword overrides win over the environment and the defaults."""
    s = load({"SCADA_SHUTDOWN_GRACE_S": "3"}, shutdown_grace_s=1.0, store=StoreSettings(directory=tmp_path))
    assert s.shutdown_grace_s == 1.0 and s.store == StoreSettings(directory=tmp_path)


def test_malformed_dotenv_lines_name_file_and_line(tmp_path: Path) -> None:
    """Malformed .env lines fail, each naming the file and its line number, all reported together."""
    path = tmp_path / "bad.env"
    path.write_text("SCADA_HTTP__PORT=1\nnot a setting\n1BAD=2\nX='open\nY=\"a\" b\n")
    found = problems({}, dotenv=path)
    assert found == (
        f"{path} line 2: expected KEY=VALUE, got 'not a setting'",
        f"{path} line 3: expected KEY=VALUE, got '1BAD=2'",
        f"{path} line 4: X: unterminated ' quote (a value must fit on one line)",
        f"{path} line 5: Y: unexpected text after the closing quote: 'b'",
    )


def test_parse_dotenv_raises_config_error() -> None:
    """parse_dotenv raises a ConfigError naming the source."""
    with pytest.raises(ConfigError, match=r"settings\.env line 1: expected KEY=VALUE"):
        parse_dotenv("oops\n", source="settings.env")


def test_missing_dotenv_is_an_error(tmp_path: Path) -> None:
    """A .env file that is given but missing is an error (nothing is loaded implicitly)."""
    assert only_problem({}, dotenv=tmp_path / "nope.env") == f"dotenv file not found: '{tmp_path / 'nope.env'}'"


def test_dotenv_value_error_names_file_and_line(tmp_path: Path) -> None:
    """A bad value from .env names the variable, the file and the line."""
    path = tmp_path / ".env"
    path.write_text("\nSCADA_HTTP__PORT=eighty\n")
    assert only_problem({}, dotenv=path) == f"SCADA_HTTP__PORT='eighty' ({path} line 2): expected an integer"


# --- errors name the variable ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("SCADA_LINKS__PARENT__ACK_TIMEOUT_S", "abc", "expected a number"),
        ("SCADA_LINKS__PARENT__HEARTBEAT_S", "inf", "expected a finite number"),
        ("SCADA_LINKS__PARENT__WINDOW", "5.5", "expected an integer"),
        ("SCADA_LINKS__PARENT__UPSTREAM", "maybe", "expected a boolean (true/false, yes/no, on/off, 1/0)"),
        ("SCADA_STORE__SYNC_POLICY", "sometimes", "expected one of 'always', 'group', 'never'"),
        ("SCADA_STORE__MAX_BYTES", "lots", "expected a byte count such as 4096, 64KiB, 512MiB or 1GB"),
        ("SCADA_BROKERS__DEFAULT__TLS__CA_FILE", "/no/such/ca.pem", "no such file: '/no/such/ca.pem'"),
        ("SCADA_BROKERS__DEFAULT__PORT", "70000", "must be a port number from 1 to 65535"),
        ("SCADA_BROKERS__DEFAULT__ENDPOINT", "mqtt.example.com", "must be a Twisted client endpoint string"),
        ("SCADA_BROKERS__DEFAULT__BACKOFF_INITIAL_S", "0", "must be greater than 0"),
        ("SCADA_LINKS__PARENT__QOS", "2", "must be 0 or 1"),
        ("SCADA_LINKS__PARENT__PEER_SHORT_NAME", "a/b", "must be non-empty without whitespace"),
        ("SCADA_LONG_NAME", "", "must be non-empty without whitespace"),
        ("SCADA_STORE__RECEIVED_WINDOW", "0", "must be greater than 0"),
        ("SCADA_SHUTDOWN_GRACE_S", "-1", "must be 0 or more"),
        ("SCADA_SERVICE_STOP_TIMEOUT_S", "0", "must be greater than 0"),
        ("SCADA_LOGGING__BASE_LEVEL", "LOUD", "expected one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'"),
        ("SCADA_HTTP__PORT", "-1", "must be a port number from 0 (any) to 65535"),
        ("SCADA_APP_NAME", "../x", "must be a plain directory name"),
    ],
)
def test_each_error_names_the_variable(name: str, raw: str, message: str) -> None:
    """Each conversion or validation error names the variable and its value, then the problem."""
    assert only_problem({**PARENT, name: raw}).startswith(f"{name}={raw!r}: {message}")


def test_level_pair_error_names_variable_and_entry() -> None:
    """A bad entry in a key=value list names the variable and the entry."""
    assert only_problem({"SCADA_LOGGING__LEVELS": "io_loop=DEBUG,lifecycle=LOUD"}).startswith(
        "SCADA_LOGGING__LEVELS='io_loop=DEBUG,lifecycle=LOUD': entry 'lifecycle=LOUD': expected one of 'DEBUG'"
    )
    assert only_problem({"SCADA_LOGGING__LEVELS": "io_loop"}) == (
        "SCADA_LOGGING__LEVELS='io_loop': entry 'io_loop': expected key=value pairs separated by ','"
    )


def test_unknown_variable_is_an_error_with_suggestion() -> None:
    """A prefixed variable that names no setting is an error, with a suggestion when one is close."""
    assert only_problem({"SCADA_STORE__SYNCPOLICY": "always"}) == (
        "SCADA_STORE__SYNCPOLICY: no such setting in StoreSettings; did you mean SCADA_STORE__SYNC_POLICY?"
    )
    assert only_problem({"SCADA_WHATEVER": "1"}) == "SCADA_WHATEVER: no such setting in ProactorSettings"


def test_unknown_variables_ignored_when_not_strict() -> None:
    """strict=False ignores prefixed variables that name no setting; other prefixes are always ignored."""
    s = load({"SCADA_WHATEVER": "1", "SCADA_STORE__X": "2", "SCADAX_Y": "3", "OTHER_Z": "4"}, strict=False)
    assert s.store.sync_policy == "group"
    assert load({"SCADAX_Y": "3", "OTHER_Z": "4"}).short_name == "s"


def test_structure_errors_name_the_variable() -> None:
    """Values given where groups are expected (and the reverse) are errors naming the variable."""
    assert only_problem({"SCADA_HTTP": "on"}) == (
        "SCADA_HTTP='on': HTTPSettings is set through its fields, e.g. SCADA_HTTP__ENABLED"
    )
    assert only_problem({"SCADA_BROKERS": "x"}) == "SCADA_BROKERS='x': set entries as SCADA_BROKERS__<NAME>__<FIELD>"
    assert only_problem({"SCADA_LONG_NAME__X": "1"}) == (
        "SCADA_LONG_NAME__X: SCADA_LONG_NAME is a single value, not a group"
    )
    assert only_problem({"SCADA_STORE__": "1"}) == "SCADA_STORE__: malformed name (an empty part between '__')"
    assert only_problem({"SCADA_BROKERS__DEFAULT__TLS": "maybe"}).startswith(
        "SCADA_BROKERS__DEFAULT__TLS='maybe': expected a boolean"
    )
    tls_off = {"SCADA_BROKERS__DEFAULT__TLS": "false", "SCADA_BROKERS__DEFAULT__TLS__CHECK_HOSTNAME": "1"}
    assert only_problem(tls_off) == (
        "SCADA_BROKERS__DEFAULT__TLS__CHECK_HOSTNAME='1': conflicts with SCADA_BROKERS__DEFAULT__TLS=false"
    )


def test_required_fields_name_the_variable() -> None:
    """Missing required settings are reported by variable name."""
    with pytest.raises(InvalidSettings) as info:
        load_settings(prefix="scada_", env={"SCADA_LINKS__UP__BROKER": "default"})
    assert info.value.problems == (
        "SCADA_LONG_NAME: required, not set",
        "SCADA_SHORT_NAME: required, not set",
        "SCADA_LINKS__UP__PEER_LONG_NAME: required, not set",
        "SCADA_LINKS__UP__PEER_SHORT_NAME: required, not set",
    )


def test_receive_deadline_must_exceed_heartbeat() -> None:
    """receive_deadline_s must be greater than heartbeat_s, whether set or defaulted; direct construction too."""
    assert only_problem({**PARENT, "SCADA_LINKS__PARENT__HEARTBEAT_S": "30"}) == (
        "SCADA_LINKS__PARENT__RECEIVE_DEADLINE_S: must be greater than heartbeat_s (30.0)"
    )
    assert only_problem({**PARENT, "SCADA_LINKS__PARENT__RECEIVE_DEADLINE_S": "5"}) == (
        "SCADA_LINKS__PARENT__RECEIVE_DEADLINE_S='5': must be greater than heartbeat_s (10.0)"
    )
    with pytest.raises(ValueError, match="greater than heartbeat_s"):
        LinkSettings(peer_long_name="p", peer_short_name="a", heartbeat_s=10, receive_deadline_s=10)


def test_cross_field_checks() -> None:
    """Backoff cap, segment size, key without cert and unknown link brokers are caught."""
    assert only_problem({"SCADA_BROKERS__DEFAULT__BACKOFF_INITIAL_S": "90"}) == (
        "SCADA_BROKERS__DEFAULT__BACKOFF_CAP_S: must be at least backoff_initial_s (90.0)"
    )
    assert only_problem({"SCADA_STORE__MAX_BYTES": "1MiB"}) == (
        "SCADA_STORE__SEGMENT_BYTES: must be greater than 0 and at most max_bytes (1048576)"
    )
    with pytest.raises(ValueError, match="needs cert_file"):
        TLSSettings(key_file=Path("/k.pem"))
    assert only_problem({**PARENT, "SCADA_LINKS__PARENT__BROKER": "cloud"}) == (
        "SCADA_LINKS: link 'parent' names broker 'cloud', which is not configured (brokers: default)"
    )


def test_all_errors_are_collected() -> None:
    """Every problem is reported in one InvalidSettings (a ConfigError), in one message."""
    env = {
        **PARENT,
        "SCADA_LINKS__PARENT__ACK_TIMEOUT_S": "abc",
        "SCADA_STORE__SYNC_POLICY": "sometimes",
        "SCADA_HTTP__PORT": "x",
        "SCADA_TYPO": "1",
    }
    with pytest.raises(ConfigError) as info:
        load(env)
    assert isinstance(info.value, InvalidSettings)
    assert info.value.problems == (
        "SCADA_TYPO: no such setting in ProactorSettings",
        "SCADA_LINKS__PARENT__ACK_TIMEOUT_S='abc': expected a number",
        "SCADA_STORE__SYNC_POLICY='sometimes': expected one of 'always', 'group', 'never'",
        "SCADA_HTTP__PORT='x': expected an integer",
    )
    assert str(info.value).startswith("4 settings problems:\n  - SCADA_TYPO: no such")


def test_errors_collected_even_when_an_entry_is_incomplete() -> None:
    """Validation still runs on what converted when an entry misses required fields or has a bad value."""
    found = problems({"SCADA_LINKS__UP__HEARTBEAT_S": "40", "SCADA_LINKS__UP__WINDOW": "0",
                      "SCADA_LINKS__UP__QOS": "x"})
    assert found == (
        "SCADA_LINKS__UP__PEER_LONG_NAME: required, not set",
        "SCADA_LINKS__UP__PEER_SHORT_NAME: required, not set",
        "SCADA_LINKS__UP__QOS='x': expected an integer",
        "SCADA_LINKS__UP__RECEIVE_DEADLINE_S: must be greater than heartbeat_s (40.0)",
        "SCADA_LINKS__UP__WINDOW='0': must be greater than 0",
    )


def test_override_errors_are_named() -> None:
    """Invalid overrides are reported under the field's variable name; unknown overrides are a TypeError."""
    assert only_problem({}, shutdown_grace_s=-1.0) == "SCADA_SHUTDOWN_GRACE_S (override): must be 0 or more"
    with pytest.raises(TypeError, match="no field"):
        load(nonsense=1)


def test_bad_prefix() -> None:
    """The prefix must be a plain identifier."""
    with pytest.raises(ValueError, match="prefix"):
        load_settings(prefix="1-x", env={})


# --- XDG paths --------------------------------------------------------------------------------


def test_xdg_defaults_under_home() -> None:
    """Without XDG variables the paths live under $HOME."""
    p = AppPaths.for_app("scada", env={"HOME": "/home/pi"})
    assert p == AppPaths(
        app_name="scada",
        config_dir=Path("/home/pi/.config/scada"),
        data_dir=Path("/home/pi/.local/share/scada"),
        state_dir=Path("/home/pi/.local/state/scada"),
        log_dir=Path("/home/pi/.local/state/scada/log"),
        event_store_dir=Path("/home/pi/.local/state/scada/event-store"),
        dotenv_file=Path("/home/pi/.config/scada/.env"),
    )


def test_default_store_dir_is_per_proactor() -> None:
    """Two proactors of one user get two default store directories (named by long name) under one state dir."""
    a = load()
    b = load({"SCADA_LONG_NAME": "d1.isone.ct.orange2.scada"})
    assert a.store.directory != b.store.directory
    assert a.store.directory.parent.parent == b.store.directory.parent.parent == Path("/home/pi/.local/state/gwproactor")
    assert b.store.directory == Path("/home/pi/.local/state/gwproactor/d1.isone.ct.orange2.scada/event-store")
    resolved = ProactorSettings(long_name="x.y", short_name="s").resolve_paths(None)
    assert resolved.store.directory.parts[-2:] == ("x.y", "event-store")
    paths = AppPaths.for_app("scada", env={"HOME": "/h"}, proactor_name="p.q")
    assert paths.event_store_dir == Path("/h/.local/state/scada/p.q/event-store")
    with pytest.raises(ConfigError, match="cannot name a directory"):
        AppPaths.for_app("scada", env={"HOME": "/h"}, proactor_name="..")


def test_xdg_variables_win_when_absolute() -> None:
    """Absolute XDG_*_HOME variables are used; relative or empty ones are ignored (as the spec says)."""
    p = AppPaths.for_app(
        "scada",
        env={"HOME": "/h", "XDG_CONFIG_HOME": "/etc/xdg", "XDG_DATA_HOME": "relative", "XDG_STATE_HOME": "/var/state"},
    )
    assert p.config_dir == Path("/etc/xdg/scada")
    assert p.data_dir == Path("/h/.local/share/scada")
    assert p.state_dir == Path("/var/state/scada")
    assert p.log_dir == Path("/var/state/scada/log")
    assert p.event_store_dir == Path("/var/state/scada/event-store")


def test_xdg_default_env_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """With env=None the process environment is read."""
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/xdg-state")
    assert AppPaths.for_app("gw").state_dir == Path("/tmp/xdg-state/gw")


def test_xdg_bad_app_name() -> None:
    """An app name that is not a plain directory name is a ConfigError."""
    with pytest.raises(ConfigError, match=r"app name '\.\./x'"):
        AppPaths.for_app("../x", env={"HOME": "/h"})


# --- redaction --------------------------------------------------------------------------------


def test_password_hidden_in_repr_to_dict_and_errors() -> None:
    """The password never appears in repr, to_dict or error messages."""
    b = BrokerSettings(username="u", password="hunter2")
    assert "hunter2" not in repr(b) and "password='***'" in repr(b)
    assert "password=None" in repr(BrokerSettings())
    s = load({"SCADA_BROKERS__DEFAULT__PASSWORD": "hunter2"})
    assert s.brokers["default"].password == "hunter2"
    assert "hunter2" not in repr(s)
    d = s.to_dict()
    assert d["brokers"]["default"]["password"] == "***"
    assert "hunter2" not in str(d)
    assert BrokerSettings().to_dict()["password"] is None
    typo = only_problem({"SCADA_BROKERS__DEFAULT__PASSWROD": "hunter2"})
    assert "hunter2" not in typo and "did you mean SCADA_BROKERS__DEFAULT__PASSWORD?" in typo


def test_to_dict_is_plain_data(tmp_path: Path) -> None:
    """to_dict gives nested dicts with paths as strings."""
    d = load({"SCADA_STORE__DIRECTORY": str(tmp_path)}).to_dict()
    assert d["store"]["directory"] == str(tmp_path)
    assert d["brokers"]["default"]["tls"] is None
    assert d["links"] == {}
    assert d["logging"]["levels"] == {}


def _settings_reference() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "docs" / "settings_reference.py"
    spec = importlib.util.spec_from_file_location("settings_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_reference_page_is_current() -> None:
    """docs/settings.rst is what docs/settings_reference.py writes from the settings classes (regenerate it)."""
    reference = _settings_reference()
    assert reference.OUTPUT.read_text() == reference.render(), "run: python docs/settings_reference.py"


def test_settings_reference_covers_every_settings_class() -> None:
    """Every settings class reachable from ProactorSettings has a section, and every field a description."""
    import typing

    reference = _settings_reference()
    covered = {cls for cls, *_ in reference.SECTIONS}
    todo, seen = [ProactorSettings], set()
    while todo:
        cls = todo.pop()
        seen.add(cls)
        for tp in typing.get_type_hints(cls).values():
            for arg in (tp, *typing.get_args(tp)):
                if attrs.has(arg) and arg not in seen:
                    todo.append(arg)
    assert seen == covered
    for cls in covered:
        assert all(reference.field_comments(cls).values()), cls
