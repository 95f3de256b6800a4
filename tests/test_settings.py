"""Settings a deployment cannot get wrong silently (issue #14): no public SECRET_KEY while DEBUG is
off, and the production settings of docs/operations.md pass `manage.py check --deploy`.

Each case runs the settings in a fresh process whose environment is this one's minus every
variable these tests are about, so neither the developer's shell nor the test run's own key
decides the answer.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

import pytest
from django.test import Client, override_settings

from roster.dev.processes import ROOT

OPERATIONS = ROOT / "docs" / "operations.md"
KEY_COMMAND = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'
SECURITY_VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
)
PRINT_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({name: "
    "getattr(s, name) for name in ('DEBUG', 'SECRET_KEY', 'SECURE_PROXY_SSL_HEADER', 'SECURE_SSL_REDIRECT', "
    "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'CSRF_TRUSTED_ORIGINS')}))"
)


def clean_env(names=(), **environ: str) -> dict[str, str]:
    """This process's environment without the variables under test (nor ``names``), plus ``environ``."""
    env = {k: v for k, v in os.environ.items() if k not in SECURITY_VARIABLES and k not in names}
    env.update(environ, DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1")
    return env


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def settings_in(env: dict[str, str]) -> dict:
    done = run([sys.executable, "-c", PRINT_SETTINGS], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def production_env_documented() -> dict[str, str]:
    """The `sh` block under "## Production settings" in docs/operations.md, as a dict. A value in
    angle brackets is the reader's to fill in: only the key may be one (a fresh key is put there)."""
    text = OPERATIONS.read_text()
    section = text.split("\n## Production settings\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL).group(1)
    documented = {}
    for line in block.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, value = line.split("=", 1)
        if value.startswith("<") and value.endswith(">"):
            assert name == "SECRET_KEY", f"{name}: only the key is left for the reader to fill in"
            value = secrets.token_urlsafe(50)
        documented[name] = value
    return documented


def dotenv_sets(name: str) -> bool:
    """Whether the checkout's .env (read by the settings, below the environment) sets ``name``."""
    dotenv = ROOT / ".env"
    return dotenv.exists() and re.search(rf"^\s*(export\s+)?{name}\s*=", dotenv.read_text(), re.MULTILINE)


@pytest.mark.once  # subprocesses, independent of the suite's database
@pytest.mark.parametrize("how", ["django.setup", "manage.py check"])
@pytest.mark.parametrize("key", [None, ""], ids=["unset", "empty"])
def test_without_a_key_and_debug_off_no_process_starts_and_it_says_how_to_make_one(how, key):
    if dotenv_sets("SECRET_KEY"):
        pytest.skip(".env sets SECRET_KEY")
    env = clean_env(DEBUG="false") if key is None else clean_env(DEBUG="false", SECRET_KEY=key)
    argv = [sys.executable, "-c", "import django; django.setup()"]
    if how == "manage.py check":
        argv = [sys.executable, str(ROOT / "manage.py"), "check"]
    done = run(argv, env)
    assert done.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "SECRET_KEY" in message and KEY_COMMAND in message, message


@pytest.mark.once
def test_with_a_key_and_debug_off_it_starts_on_that_key_with_plain_http_defaults():
    key = secrets.token_urlsafe(50)
    env = clean_env(DEBUG="false", SECRET_KEY=key)
    done = run([sys.executable, str(ROOT / "manage.py"), "check"], env)
    assert done.returncode == 0, done.stderr
    # The defaults keep plain http working (the demo, the tests, a development server).
    assert settings_in(env) == {
        "DEBUG": False,
        "SECRET_KEY": key,
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "CSRF_TRUSTED_ORIGINS": [],
    }


@pytest.mark.once
def test_debug_on_without_a_key_uses_one_development_key_in_every_process():
    if dotenv_sets("SECRET_KEY"):
        pytest.skip(".env sets SECRET_KEY")
    env = clean_env(DEBUG="true")
    first, second = settings_in(env), settings_in(env)
    # One key for every process: a host link printed by `manage.py host_link` opens in Daphne.
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    # ... and `check --deploy` calls it what it is (security.W009).
    assert first["SECRET_KEY"].startswith("django-insecure-")


@pytest.mark.once
def test_the_production_settings_of_docs_operations_pass_check_deploy():
    documented = production_env_documented()
    env = clean_env(names=documented, **documented)
    done = run([sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    applied = settings_in(env)
    assert applied["DEBUG"] is False and applied["SECRET_KEY"] == documented["SECRET_KEY"]
    assert applied["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]  # a tuple, via JSON


@pytest.mark.once
def test_a_proxy_header_that_is_not_a_name_and_a_value_is_refused_at_start():
    env = clean_env(DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50), SECURE_PROXY_SSL_HEADER="https")
    done = run([sys.executable, "-c", "import django; django.setup()"], env)
    assert done.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER" in done.stderr.strip().splitlines()[-1]


@pytest.mark.once
def test_the_demo_makes_its_own_key_when_none_is_set():
    """`make demo` runs with DEBUG off, as a deployment does; its children inherit the key."""
    if dotenv_sets("SECRET_KEY"):
        pytest.skip(".env sets SECRET_KEY")
    done = run([sys.executable, str(ROOT / "manage.py"), "demo", "--help"], clean_env(DEBUG="false"))
    assert done.returncode == 0, done.stderr
    assert "--meeting-minutes" in done.stdout


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_with_the_https_redirect_on_probes_stay_on_http_and_the_proxy_header_counts():
    client = Client()  # its handler reads the overridden settings
    redirected = client.get("/login/")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
    assert client.get("/login/", headers={"X-Forwarded-Proto": "https"}).status_code == 200
    # Load balancers and Prometheus probe the backend over plain http.
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/metrics").status_code == 401
