"""docker-compose.yml, the Dockerfile and .env.example agree with the code they deploy.

No Docker engine is needed: the files are read and checked against the settings module,
the management commands and the entry points they name. No database either.
"""

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from celery.bin.celery import celery as celery_cli
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS_FILE = ROOT / "config" / "settings.py"

APP_SERVICES = ("migrate", "web", "worker", "beat", "sessions")
LONG_RUNNING_APP_SERVICES = ("web", "worker", "beat", "sessions")
DATA_SERVICES = ("postgres", "redis")
# Read through os.environ by config/embedded.py and config/devrun.py, not by settings.
EMBEDDED_AND_DEVRUN_VARIABLES = {
    "EMBEDDED_DATA_DIR",
    "EMBEDDED_PG_PORT",
    "EMBEDDED_REDIS_PORT",
    "EMBEDDED_PG_FAST",
    "WEB_PORT",
}

_ENV_READ = re.compile(r"""\benv(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""")
_REQUIRED_TUPLE = re.compile(r"_REQUIRED_IN_PRODUCTION\s*=\s*\((.*?)\)", re.DOTALL)
_QUOTED_NAME = re.compile(r"""["']([A-Z][A-Z0-9_]*)["']""")
# ${NAME}, ${NAME:?message}, ${NAME:-default}... and $NAME, but not the escaped $$NAME.
_INTERPOLATION = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
_ENV_EXAMPLE_LINE = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=")


def _settings_source() -> str:
    return SETTINGS_FILE.read_text()


def required_in_production() -> set[str]:
    match = _REQUIRED_TUPLE.search(_settings_source())
    assert match, "config/settings.py no longer defines the _REQUIRED_IN_PRODUCTION tuple"
    return set(_QUOTED_NAME.findall(match.group(1)))


def settings_variables() -> set[str]:
    """Every environment variable config/settings.py reads, from its source."""
    return set(_ENV_READ.findall(_settings_source())) | required_in_production()


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.exists(), f"{COMPOSE_FILE} is missing"
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _command(service: dict) -> list[str]:
    command = service.get("command")
    assert command, "has no command"
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def _healthy_dependencies(service: dict) -> set[str]:
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):  # the short form waits for nothing but the start
        return set()
    return {
        name
        for name, condition in depends_on.items()
        if (condition or {}).get("condition") == "service_healthy"
    }


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _uvicorn_target(command: list[str]) -> str:
    if command[:3] == ["python", "-m", "uvicorn"]:
        command = command[2:]
    assert command[0] == "uvicorn", f"is not a uvicorn command: {command}"
    targets = [arg for arg in command[1:] if not arg.startswith("-") and ":" in arg]
    assert targets, f"names no module:attribute for uvicorn: {command}"
    return targets[0]


def _assert_uvicorn_target_exists(target: str, where: str) -> None:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        pytest.fail(f"{where}: uvicorn module {module_name!r} cannot be imported: {error}")
    assert hasattr(module, attribute), (
        f"{where}: uvicorn target {target!r}: module {module_name} has no {attribute!r}"
    )


def _dockerfile_cmd() -> list[str]:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, f"the Dockerfile should have exactly one CMD, found {len(lines)}"
    try:
        return json.loads(lines[0].removeprefix("CMD "))
    except json.JSONDecodeError:
        pytest.fail(f"the Dockerfile CMD is not in exec (JSON list) form: {lines[0]}")


# --- the parsing itself


def test_settings_variables_are_found_in_the_settings_source():
    found = settings_variables()
    for name in ("APP_ENV", "DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_URL"):
        assert name in found, f"parsing config/settings.py did not find {name}; found {found}"
    assert {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "PUBLIC_URL"} <= required_in_production()


# --- docker-compose.yml: services and their dependencies


def test_compose_defines_every_service_of_the_platform(services):
    missing = set(DATA_SERVICES + APP_SERVICES) - set(services)
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"


@pytest.mark.parametrize("name", DATA_SERVICES)
def test_data_services_keep_their_data_in_a_volume_and_have_a_healthcheck(compose, name):
    service = compose["services"][name]
    volumes = service.get("volumes") or []
    named = [v.split(":", 1)[0] for v in volumes if isinstance(v, str) and ":" in v]
    assert named, f"{name} keeps its data in no volume: it would be lost with the container"
    for volume in named:
        if not volume.startswith((".", "/")):
            assert volume in (compose.get("volumes") or {}), (
                f"{name} mounts the volume {volume!r}, which the top-level volumes: omits"
            )
    test = (service.get("healthcheck") or {}).get("test")
    assert test, f"{name} has no healthcheck, so nothing can wait for it to be ready"
    probe = {"postgres": "pg_isready", "redis": "redis-cli"}[name]
    assert probe in " ".join(test if isinstance(test, list) else [test]), (
        f"{name}'s healthcheck does not use {probe}: {test}"
    )


def test_redis_persists_with_an_append_only_file(services):
    command = _command(services["redis"])
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes", (
        f"redis runs without --appendonly yes, so queued tasks are lost on restart: {command}"
    )


def test_migrate_runs_once_after_postgres_is_healthy(services):
    migrate = services["migrate"]
    assert "postgres" in _healthy_dependencies(migrate), (
        "migrate does not wait for postgres to be healthy (depends_on condition: service_healthy)"
    )
    assert str(migrate.get("restart", "no")) == "no", (
        f"migrate is a one-shot job but has restart: {migrate.get('restart')}"
    )


@pytest.mark.parametrize("name", LONG_RUNNING_APP_SERVICES)
def test_app_processes_start_after_a_successful_migrate_and_a_healthy_redis(services, name):
    depends_on = services[name].get("depends_on") or {}
    assert isinstance(depends_on, dict), f"{name}: depends_on must use the long form"
    migrate = (depends_on.get("migrate") or {}).get("condition")
    assert migrate == "service_completed_successfully", (
        f"{name} does not wait for migrate to complete successfully (condition: {migrate})"
    )
    assert "redis" in _healthy_dependencies(services[name]), (
        f"{name} does not wait for redis to be healthy"
    )
    assert services[name].get("restart") == "unless-stopped", (
        f"{name} is not restarted when it dies (restart: {services[name].get('restart')})"
    )


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_app_service_has_a_healthcheck_or_waits_for_healthy_services(services, name):
    service = services[name]
    assert service.get("healthcheck") or _healthy_dependencies(service), (
        f"{name} has no healthcheck and waits for no healthy service"
    )


def test_web_healthcheck_accepts_any_http_answer_from_health(services):
    test = services["web"].get("healthcheck", {}).get("test")
    assert test, "web has no healthcheck"
    probe = " ".join(test if isinstance(test, list) else [test])
    assert "/health/" in probe, f"web's healthcheck does not ask /health/: {probe}"
    # /health/ is 503 until a worker and a runner beat: a failing status must not fail it.
    assert not re.search(r"curl\s[^|]*-\w*f", probe), (
        f"web's healthcheck uses curl -f, so web looks unhealthy whenever another "
        f"process is down: {probe}"
    )


def test_sessions_get_time_to_disconnect_gracefully(services):
    grace = str(services["sessions"].get("stop_grace_period", ""))
    assert grace == "30s", f"sessions should have stop_grace_period: 30s, not {grace!r}"


# --- docker-compose.yml: commands


def test_every_service_command_names_a_real_entry_point(services):
    commands = get_commands()
    celery_subcommands = set(celery_cli.commands)
    problems = []
    for name in APP_SERVICES:
        command = _command(services[name])
        if command[0] == "uvicorn" or command[:3] == ["python", "-m", "uvicorn"]:
            _assert_uvicorn_target_exists(_uvicorn_target(command), f"service {name}")
        elif command[0] == "celery":
            assert "-A" in command, f"{name}: celery without -A: {command}"
            app_name = command[command.index("-A") + 1]
            app = find_app(app_name)
            if not isinstance(app, Celery):
                problems.append(f"{name}: celery -A {app_name} finds {app!r}, not a Celery app")
            subcommand = command[command.index("-A") + 2]
            if subcommand not in celery_subcommands:
                problems.append(f"{name}: {subcommand!r} is not a celery command")
        elif command[:2] == ["python", "manage.py"]:
            if command[2] not in commands:
                problems.append(f"{name}: manage.py has no command {command[2]!r}")
        else:
            problems.append(f"{name}: unrecognised command {command}")
    assert not problems, "; ".join(problems)


def test_celery_services_use_the_project_celery_app(services):
    import config

    assert isinstance(config.celery_app, Celery), "config.celery_app is not a Celery app"
    for name, subcommand in (("worker", "worker"), ("beat", "beat")):
        command = _command(services[name])
        assert command[:4] == ["celery", "-A", "config", subcommand], (
            f"{name} should run `celery -A config {subcommand}`, runs {command}"
        )
    assert find_app("config") is config.celery_app, "`-A config` does not find config.celery_app"


def test_app_services_run_the_expected_processes(services):
    expected = {
        "migrate": ["python", "manage.py", "migrate_platform"],
        "sessions": ["python", "manage.py", "run_sessions"],
    }
    for name, command in expected.items():
        assert _command(services[name]) == command, (
            f"{name} runs {_command(services[name])}, expected {command}"
        )
    web_target = _uvicorn_target(_command(services["web"]))
    assert web_target == "config.asgi:application", (
        f"web serves {web_target}, not the ASGI application config.asgi:application"
    )


# --- environment


def test_app_services_pass_only_variables_the_settings_read(services):
    known = settings_variables()
    for name in APP_SERVICES:
        unknown = set(_environment(services[name])) - known
        assert not unknown, (
            f"{name} sets {sorted(unknown)}, which config/settings.py never reads "
            "(a typo, or a setting that was removed)"
        )


def test_app_services_run_in_production_with_every_required_secret(services):
    required = required_in_production()
    for name in APP_SERVICES:
        environment = _environment(services[name])
        assert environment.get("APP_ENV") == "production", f"{name} does not set APP_ENV=production"
        missing = required - set(environment)
        assert not missing, (
            f"{name} does not pass {sorted(missing)}, which production requires: set them "
            "with ${NAME:?message} so compose refuses to start without them"
        )


def test_every_interpolated_variable_is_read_by_settings_or_postgres(compose, services):
    allowed = settings_variables() | set(_environment(services["postgres"]))
    interpolated = set()
    for text in _strings(compose):
        for braced, bare in _INTERPOLATION.findall(text):
            interpolated.add(braced or bare)
    unknown = interpolated - allowed
    assert not unknown, (
        f"docker-compose.yml interpolates {sorted(unknown)}, which neither config/settings.py "
        "nor the postgres service reads"
    )


def _env_example_variables() -> list[str]:
    assert ENV_EXAMPLE.exists(), f"{ENV_EXAMPLE} is missing"
    return [
        match.group(1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if (match := _ENV_EXAMPLE_LINE.match(line))
    ]


def _compose_only_variables(compose, services) -> set[str]:
    """Variables docker-compose.yml needs for itself (the postgres password)."""
    interpolated = set()
    for text in _strings(compose):
        for braced, bare in _INTERPOLATION.findall(text):
            interpolated.add(braced or bare)
    return (interpolated & set(_environment(services["postgres"]))) - settings_variables()


def test_env_example_lists_exactly_the_variables_the_code_reads(compose, services):
    listed = _env_example_variables()
    duplicated = sorted({name for name in listed if listed.count(name) > 1})
    assert not duplicated, f".env.example lists {duplicated} more than once"
    expected = (
        settings_variables()
        | EMBEDDED_AND_DEVRUN_VARIABLES
        | _compose_only_variables(compose, services)
    )
    missing = expected - set(listed)
    extra = set(listed) - expected
    assert not missing, f".env.example does not document {sorted(missing)}"
    assert not extra, f".env.example lists {sorted(extra)}, which nothing reads"


# --- Dockerfile


def test_dockerfile_cmd_runs_the_same_asgi_application_as_web(services):
    command = _dockerfile_cmd()
    target = _uvicorn_target(command)
    _assert_uvicorn_target_exists(target, "Dockerfile CMD")
    web_target = _uvicorn_target(_command(services["web"]))
    assert target == web_target, (
        f"the Dockerfile CMD serves {target} but the web service serves {web_target}"
    )
