"""docker-compose.yml, the Dockerfile and .env.example agree with the Procfile and the settings.

File checks only: no Docker engine, no database, no broker. Each test names what drifted.
"""

import fnmatch
import itertools
import json
import re
import shlex
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "docker-compose.yml"
DOCKERFILE_PATH = ROOT / "Dockerfile"
DOCKERIGNORE_PATH = ROOT / ".dockerignore"
ENV_EXAMPLE_PATH = ROOT / ".env.example"
PROCFILE_PATH = ROOT / "Procfile"
FLOWERCONFIG_PATH = ROOT / "flowerconfig.py"
GUNICORN_CONFIG_PATH = ROOT / "gunicorn.conf.py"
SETTINGS_DIR = ROOT / "config" / "settings"

INFRA_SERVICES = ("postgres", "rabbitmq", "redis")
PROCESS_SERVICES = ("web", "worker", "beat", "flower")  # one per Procfile line
APP_SERVICES = (*PROCESS_SERVICES, "migrate")  # built from the Dockerfile
# What each long-running service's healthcheck must exercise.
HEALTHCHECK_PROBES = {
    "postgres": "pg_isready",
    "rabbitmq": "rabbitmq-diagnostics -q ping",
    "redis": "redis-cli ping",
    "web": "/healthz",
    "worker": "inspect ping -d celery@$HOSTNAME",
    "beat": "beat",
    "flower": "/healthcheck",
}
DATA_VOLUMES = {
    "postgres": "/var/lib/postgresql/data",
    "rabbitmq": "/var/lib/rabbitmq",
    "redis": "/data",
}
RABBITMQ_MANAGEMENT_PORTS = {15672, 15671}
RABBITMQ_AMQP_PORTS = {5672, 5671}
# Variables the production settings cannot start without, at the least (the test also derives
# them from prod.py, so a new required one is caught too); Flower's own requirement on top.
PROD_REQUIRED = {"DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}
FLOWER_REQUIRED = {"FLOWER_BASIC_AUTH"}
PLACEHOLDER = "change-me"

SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|AUTH|_KEY$")
# `env("X")`, `env.list("X", ...)`, `env.bool("X", default=...)`...
SETTINGS_READ = re.compile(r"\benv(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']")
SETTINGS_READ_NO_DEFAULT = re.compile(r"\benv(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*\)")
OS_ENVIRON_READ = re.compile(r"os\.environ(?:\.get\(|\[)\s*[\"']([A-Z][A-Z0-9_]*)[\"']")
# `KEY=value` or, commented out (optional), `# KEY=value`.
ENV_LINE = re.compile(r"^(?P<commented>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
# Compose's `$$` (a literal `$`), `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `$VAR`.
COMPOSE_DOLLAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_]\w*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|\$(?P<bare>[A-Za-z_]\w*)"
)
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://(?P<user>[^:/@\s]*):(?P<password>[^@\s]+)@")
SECRET_FLAGS = {"--requirepass", "--masterauth", "--password", "--pass"}


# --- loaders ------------------------------------------------------------------------------
@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_PATH.read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


@cache
def procfile() -> dict[str, str]:
    lines = {}
    for line in PROCFILE_PATH.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            lines[name.strip()] = command.strip()
    return lines


@cache
def env_example() -> dict[str, tuple[bool, str]]:
    """name -> (active, value); active lines are set when the file is copied as an env file."""
    entries = {}
    for line in ENV_EXAMPLE_PATH.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            active = match["commented"] is None
            if active or match["name"] not in entries:
                entries[match["name"]] = (active, match["value"].strip())
    return entries


@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line for line in DOCKERFILE_PATH.read_text().splitlines() if not line.lstrip().startswith("#")
        ),
    )
    instructions = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_exec_form(keyword: str) -> list[str]:
    values = [args for kw, args in dockerfile_instructions() if kw == keyword]
    assert values, f"the Dockerfile has no {keyword}"
    value = json.loads(values[-1])  # the last one wins; exec (JSON) form expected
    assert isinstance(value, list)
    return value


def settings_reads() -> set[str]:
    return {name for path in SETTINGS_DIR.glob("*.py") for name in SETTINGS_READ.findall(path.read_text())}


def prod_required() -> set[str]:
    return set(SETTINGS_READ_NO_DEFAULT.findall((SETTINGS_DIR / "prod.py").read_text()))


def flower_reads() -> set[str]:
    return set(OS_ENVIRON_READ.findall(FLOWERCONFIG_PATH.read_text()))


def gunicorn_reads() -> set[str]:
    return set(OS_ENVIRON_READ.findall(GUNICORN_CONFIG_PATH.read_text()))


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def env_files(svc: dict) -> list[str]:
    files = svc.get("env_file") or []
    if isinstance(files, str | dict):
        files = [files]
    return [item["path"] if isinstance(item, dict) else item for item in files]


def command_line(svc: dict) -> str:
    command = svc.get("command")
    assert command, "no command"
    return " ".join(command) if isinstance(command, list) else command


def unescape(text: str) -> str:
    """What the container receives from compose for text holding no interpolation: `$$` -> `$`."""
    return text.replace("$$", "$")


def interpolations(text: str):
    """The ${...}/$VAR references compose itself resolves (on the host) in text."""
    for match in COMPOSE_DOLLAR.finditer(text):
        if match.group(0) != "$$":
            yield match


def strip_interpolations(text: str) -> str:
    return COMPOSE_DOLLAR.sub(lambda m: "$" if m.group(0) == "$$" else "", text)


def mask_interpolations(text: str, mask: str = "__REF__") -> str:
    """Each ${...} reference replaced by `mask` (their error messages hold spaces and colons)."""
    return COMPOSE_DOLLAR.sub(lambda m: "$" if m.group(0) == "$$" else mask, text)


def resolve_defaults(text: str) -> str:
    """Replace ${VAR:-default} by its default; leave unresolvable references as they are."""

    def default(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        if match["op"] in (":-", "-"):
            return match["arg"]
        return match.group(0)

    return COMPOSE_DOLLAR.sub(default, text)


def all_strings(node, path=()):
    """Every (path, string) in the compose document, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), str(key)
            yield from all_strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from all_strings(value, (*path, index))
    elif isinstance(node, str):
        yield path, node


def all_lists(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from all_lists(value)
    elif isinstance(node, list):
        yield node
        for value in node:
            yield from all_lists(value)


def published_ports(svc: dict):
    """(host_ip, published, target) of each published port, short or long syntax."""
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            yield str(entry.get("host_ip", "")), str(entry.get("published", "")), str(entry["target"])
            continue
        spec = resolve_defaults(str(entry)).split("/")[0]
        host_ip = ""
        if spec.startswith("["):
            host_ip, _, spec = spec[1:].partition("]:")
        parts = spec.split(":")
        if len(parts) == 3:
            host_ip, published, target = parts
        elif len(parts) == 2:
            published, target = parts
        else:
            published, target = "", parts[0]
        yield host_ip, published, target


def port_numbers(spec: str) -> set[int]:
    first, _, last = spec.partition("-")
    return set(range(int(first), int(last or first) + 1))


def compose_variable_names() -> set[str]:
    """Every variable the compose file reads or sets: environment keys and every reference."""
    names = set()
    for svc in compose()["services"].values():
        names |= set(environment(svc))
    for _, text in all_strings(compose()):  # comments are not read by compose
        names |= {m["braced"] or m["bare"] for m in interpolations(text)}
        # `$${X}` / `$$X`: expanded inside the container by its shell (the Procfile lines).
        names |= set(re.findall(r"\$\$\{?([A-Za-z_]\w*)", text))
    return names


def dockerignored(path: str) -> bool:
    ignored = False
    for pattern in DOCKERIGNORE_PATH.read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.removeprefix("**/")):
            ignored = not negated
    return ignored


# --- the compose file -----------------------------------------------------------------------
def test_compose_file_parses_into_services_and_volumes():
    document = compose()
    assert isinstance(document, dict)
    assert isinstance(document.get("services"), dict) and document["services"]
    assert isinstance(document.get("volumes"), dict)


@pytest.mark.parametrize("name", [*INFRA_SERVICES, *PROCESS_SERVICES, "migrate"])
def test_every_expected_service_exists(name):
    assert name in compose()["services"], f"docker-compose.yml has no {name} service"


@pytest.mark.parametrize("name", list(HEALTHCHECK_PROBES))
def test_service_has_a_healthcheck_that_probes_it(name):
    healthcheck = service(name).get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable"), f"{name}'s healthcheck is disabled"
    test = healthcheck.get("test")
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {test!r}"
    probe = unescape(" ".join(test[1:]))
    assert HEALTHCHECK_PROBES[name] in probe, (
        f"{name}'s healthcheck does not run {HEALTHCHECK_PROBES[name]!r}"
    )


def test_every_procfile_process_has_a_compose_service():
    assert set(procfile()) == set(PROCESS_SERVICES), "Procfile processes and compose services differ"


@pytest.mark.parametrize("name", PROCESS_SERVICES)
def test_service_command_is_its_procfile_line(name):
    assert unescape(command_line(service(name))) == procfile()[name]


@pytest.mark.parametrize("name", PROCESS_SERVICES)
def test_procfile_line_survives_compose_and_the_container_shell(name):
    """Compose must not expand the line on the host, nor its word splitting change it."""
    raw = command_line(service(name))
    leftover = [m.group(0) for m in interpolations(raw)]
    assert not leftover, f"{name}: compose would interpolate {leftover} on the host; write them with $$"
    line = procfile()[name]
    # Compose splits a string command into words and the entrypoint joins them with spaces
    # (`$*`): quotes or doubled spaces in the Procfile line would be lost on the way.
    assert " ".join(shlex.split(line)) == line, f"the Procfile {name} line does not survive word splitting"
    assert "entrypoint" not in service(name), f"{name} must keep the image's shell entrypoint"


def test_image_entrypoint_runs_the_command_line_through_a_shell():
    entrypoint = dockerfile_exec_form("ENTRYPOINT")
    assert entrypoint[:2] == ["/bin/sh", "-c"], entrypoint
    assert "eval" in entrypoint[2] and "exec" in entrypoint[2] and "$*" in entrypoint[2], entrypoint


def test_image_default_command_is_the_procfile_web_line():
    assert dockerfile_exec_form("CMD") == [procfile()["web"]]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_runs_production_settings_from_the_env_file(name):
    svc = service(name)
    assert svc.get("build"), f"{name} is not built from the Dockerfile"
    assert environment(svc).get("DJANGO_SETTINGS_MODULE") == "config.settings.prod"
    assert env_files(svc), f"{name} has no env_file"


def test_app_services_share_one_documented_and_dockerignored_env_file():
    files = {tuple(env_files(service(name))) for name in APP_SERVICES}
    assert len(files) == 1, f"app services read different env files: {files}"
    (names,) = files
    for env_file in names:
        relative = env_file.removeprefix("./")
        assert relative in ENV_EXAMPLE_PATH.read_text(), f".env.example does not mention {env_file}"
        assert dockerignored(relative), f"{env_file} would be copied into the image"
    assert dockerignored(".env"), "the development .env would be copied into the image"


def test_required_prod_variables_include_the_known_ones():
    # Guards the regex: if it stopped matching, the next test would check nothing.
    assert prod_required() >= PROD_REQUIRED


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_gets_every_variable_production_requires(name):
    svc = service(name)
    required = prod_required() | (FLOWER_REQUIRED if name == "flower" else set())
    env = environment(svc)
    from_env_file = {var for var, (active, value) in env_example().items() if active and value}
    missing = {var for var in required if not env.get(var) and not (env_files(svc) and var in from_env_file)}
    assert not missing, f"{name} gets no {sorted(missing)} (neither environment nor the env file template)"


def test_service_urls_point_at_the_compose_services():
    env = environment(service("web"))
    expected = {
        "DATABASE_URL": ({"postgres", "postgresql"}, "postgres", 5432),
        "CELERY_BROKER_URL": ({"amqp", "pyamqp"}, "rabbitmq", 5672),
        "REDIS_URL": ({"redis"}, "redis", 6379),
        "RABBITMQ_MANAGEMENT_URL": ({"http"}, "rabbitmq", 15672),
    }
    for var, (schemes, host, port) in expected.items():
        assert var in env, f"web gets no {var} built in docker-compose.yml"
        url = urlsplit(mask_interpolations(env[var], "x"))
        assert (url.scheme in schemes, url.hostname, url.port) == (True, host, port), f"{var}={env[var]}"
    for name in APP_SERVICES:
        for var in expected:
            assert environment(service(name)).get(var) == env[var], f"{name} and web differ on {var}"


@pytest.mark.parametrize("name", [*INFRA_SERVICES, *APP_SERVICES])
def test_dependencies_wait_for_a_condition(name):
    depends_on = service(name).get("depends_on") or {}
    assert isinstance(depends_on, dict), f"{name}: short depends_on syntax waits for nothing"
    for dependency, spec in depends_on.items():
        assert dependency in compose()["services"], f"{name} depends on unknown {dependency}"
        expected = "service_completed_successfully" if dependency == "migrate" else "service_healthy"
        assert (spec or {}).get("condition") == expected, f"{name} -> {dependency}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_waits_for_the_services_it_uses(name):
    needs = {"migrate": {"postgres"}, "flower": {"rabbitmq"}}.get(name, {*INFRA_SERVICES, "migrate"})
    assert needs <= set(service(name).get("depends_on") or {}), f"{name} does not wait for {needs}"


def test_migrate_is_a_one_shot_that_migrates_and_installs_periodic_tasks():
    svc = service("migrate")
    assert svc.get("restart", "no") == "no", "a one-shot service must not restart"
    assert svc.get("entrypoint") == ["/bin/sh", "-c"], "`a && b` needs a shell, not the exec entrypoint"
    command = command_line(svc)
    assert command.index("python manage.py migrate --noinput") < command.index(
        "&& python manage.py setup_periodic_tasks"
    )


@pytest.mark.parametrize("name", list(DATA_VOLUMES))
def test_service_keeps_its_data_in_a_named_volume(name):
    mounts = {}
    for volume in service(name).get("volumes") or []:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, _, target = volume.partition(":")
            mounts[target.split(":")[0]] = source
    source = mounts.get(DATA_VOLUMES[name])
    assert source, f"{name} does not mount a volume at {DATA_VOLUMES[name]}"
    assert source in (compose().get("volumes") or {}), f"{name}'s {source} is not a declared named volume"


def test_rabbitmq_management_ui_is_published_on_loopback_only():
    ports = list(published_ports(service("rabbitmq")))
    management = [(ip, target) for ip, _, target in ports if port_numbers(target) & RABBITMQ_MANAGEMENT_PORTS]
    assert management, "RabbitMQ's management UI is not published"
    assert all(ip == "127.0.0.1" for ip, _ in management), (
        f"management UI bound beyond loopback: {management}"
    )
    amqp = [(ip, target) for ip, _, target in ports if port_numbers(target) & RABBITMQ_AMQP_PORTS]
    assert all(ip == "127.0.0.1" for ip, _ in amqp), f"AMQP published beyond loopback: {amqp}"


@pytest.mark.parametrize("name", [*INFRA_SERVICES, *APP_SERVICES])
def test_no_port_is_published_beyond_loopback(name):
    exposed = [port for port in published_ports(service(name)) if port[0] != "127.0.0.1"]
    assert not exposed, f"{name} publishes {exposed} on every interface"


def test_no_secret_literal_in_the_compose_file():
    document = compose()
    problems = []
    for name, svc in document["services"].items():
        for key, value in environment(svc).items():
            if SECRET_NAME.search(key) and (strip_interpolations(value).strip() or value == ""):
                problems.append(f"{name}: {key} is not only a ${{...}} reference")
    for path, text in all_strings(document):
        for match in URL_CREDENTIALS.finditer(mask_interpolations(text)):
            if match["password"].replace("__REF__", ""):
                problems.append(f"{'/'.join(map(str, path))}: password literal in a URL")
        for ref in interpolations(text):
            variable = ref["braced"] or ref["bare"]
            if SECRET_NAME.search(variable) and ref["op"] in ("-", ":-") and ref["arg"]:
                problems.append(f"{'/'.join(map(str, path))}: {variable} has a default, a literal secret")
        if PLACEHOLDER in text or "guest:guest" in text:
            problems.append(f"{'/'.join(map(str, path))}: placeholder or default credentials")
    for items in all_lists(document):
        for flag, value in itertools.pairwise(items):
            if flag in SECRET_FLAGS and strip_interpolations(str(value)):
                problems.append(f"{flag} is followed by a literal")
    assert not problems, "\n".join(problems)


def test_every_interpolated_variable_is_set_by_the_env_file_template():
    """`cp .env.example .env.compose` must give compose every variable it interpolates."""
    entries = env_example()
    missing = set()
    references = [m for _, text in all_strings(compose()) for m in interpolations(text)]
    assert references, "docker-compose.yml interpolates nothing: where do its passwords come from?"
    for match in references:
        variable = match["braced"] or match["bare"]
        has_default = match["op"] in ("-", ":-")
        if not has_default and not (variable in entries and entries[variable][0] and entries[variable][1]):
            missing.add(variable)
    assert not missing, f".env.example sets no {sorted(missing)} that docker-compose.yml interpolates"


# --- .env.example --------------------------------------------------------------------------
def test_env_example_names_only_variables_something_reads():
    known = settings_reads() | flower_reads() | gunicorn_reads() | compose_variable_names()
    unknown = set(env_example()) - known
    assert not unknown, (
        f".env.example names {sorted(unknown)}, read by no setting, flowerconfig, gunicorn.conf.py or compose"
    )


def test_env_example_documents_every_variable_the_settings_flower_and_gunicorn_read():
    reads = settings_reads() | flower_reads() | gunicorn_reads()
    assert reads >= PROD_REQUIRED | FLOWER_REQUIRED, "the settings regex no longer finds the reads"
    assert gunicorn_reads() >= {"WEB_BIND", "WEB_PORT", "WEB_CONCURRENCY"}, (
        "the regex misses gunicorn's reads"
    )
    missing = reads - set(env_example())
    assert not missing, f".env.example does not document {sorted(missing)}"


def test_env_example_comments_every_variable():
    previous = None
    for number, line in enumerate(ENV_EXAMPLE_PATH.read_text().splitlines(), start=1):
        stripped = line.strip()
        if ENV_LINE.match(stripped):
            assert previous is not None, f".env.example line {number}: {stripped} has no comment above it"
        elif stripped.startswith("#") and stripped.strip("#- ") and not stripped.startswith("# ----"):
            previous = number
        else:
            previous = None


def test_env_example_holds_placeholders_not_secrets():
    for variable, (active, value) in env_example().items():
        if not active:
            continue
        if SECRET_NAME.search(variable):
            assert PLACEHOLDER in value, f"{variable}={value} is not an obvious placeholder"
        for match in URL_CREDENTIALS.finditer(value):
            assert match["password"] == PLACEHOLDER, f"{variable} holds a password that is not {PLACEHOLDER}"


def test_env_example_required_variables_are_active():
    entries = env_example()
    for variable in PROD_REQUIRED | FLOWER_REQUIRED:
        assert entries.get(variable, (False, ""))[0], (
            f"{variable} is required but commented out in .env.example"
        )


# --- Dockerfile ----------------------------------------------------------------------------
def test_dockerfile_builds_from_python_slim_with_the_requirements():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert any(kw == "RUN" and "pip install -r requirements.txt" in args for kw, args in instructions)
    assert any(kw == "RUN" and "collectstatic --noinput" in args for kw, args in instructions)


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for kw, args in dockerfile_instructions() if kw == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_keeps_no_secret_in_env_or_arg():
    for keyword, arguments in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"(?:^|\s)([A-Za-z_]\w*)(?==|\s|$)", arguments)
            secret = [name for name in names if SECRET_NAME.search(name.upper())]
            assert not secret, f"{keyword} {arguments}: {secret} would stay in the image"
