"""The layers of ../shared/DESIGN.md ("Layout") hold in the imports: each package of roster/ imports
only the packages before it, the domain imports no framework, and no product module imports the
developer tools. Every import counts, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent

# Lowest first: a layer may import itself and the layers before it.
LAYERS = ("domain", "models", "ingest", "read", "live", "hooks", "sources", "web", "ops", "dev")
# Modules that are not in a layer folder, by the layer they belong to (Django's fixed names).
PLACED = {
    "roster.models": "models",
    "roster.migrations": "models",
    "roster.templatetags": "web",
    "roster.admin": "ops",
}
# Shells wire the layers together and may import any of them but the developer tools; the dev
# commands (and only they) may import roster.dev as well.
SHELLS = ("roster.apps", "roster.tasks", "roster.management", "roster", "consumers", "config")
# ... except the consumers, which authenticate, subscribe and forward: they stop at the live layer.
SHELL_CEILING = {"consumers": "live"}
DEV_COMMANDS = ("roster.management.commands.demo", "roster.management.commands.simulate")
FRAMEWORKS = (
    "django",
    "channels",
    "channels_redis",
    "celery",
    "kombu",
    "redis",
    "boto3",
    "botocore",
    "psycopg",
)


def layer_of(module: str) -> str | None:
    """The layer of a project module; None for a shell or an outside module."""
    for prefix, layer in PLACED.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    parts = module.split(".")
    if parts[0] == "roster" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return None


def imported(source: str, module: str) -> set[str]:
    """Every module an import statement in ``source`` names (relative imports resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base]) if base else ".".join(package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, if it is one
    return names


def violations(module: str, source: str) -> list[str]:
    """What ``module`` (with this source) imports that the layering forbids."""
    layer = layer_of(module)
    found = []
    for name in sorted(imported(source, module)):
        top = name.split(".")[0]
        target = layer_of(name)
        if layer == "domain" and top in FRAMEWORKS:
            found.append(f"{module} imports {name}: the domain is pure Python")
        if target == "dev" and layer != "dev" and not module.startswith(DEV_COMMANDS):
            found.append(f"{module} imports {name}: the product never imports the developer tools")
        elif layer is not None and target is not None and LAYERS.index(target) > LAYERS.index(layer):
            found.append(f"{module} ({layer}) imports {name} ({target}), a layer above it")
        elif layer is None and not module.startswith(SHELLS) and target is not None:
            found.append(f"{module} is in no layer")
        ceiling = SHELL_CEILING.get(module.split(".")[0])
        if ceiling and target is not None and LAYERS.index(target) > LAYERS.index(ceiling):
            found.append(f"{module} imports {name} ({target}): a consumer stops at the {ceiling} layer")
    return found


def project_modules() -> dict[str, str]:
    modules = {}
    for package in ("roster", "consumers", "config"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path.read_text()
    return modules


def test_every_module_imports_only_the_layers_before_its_own():
    modules = project_modules()
    assert {"roster.domain.plan", "roster.ingest.store", "roster.live.broadcast", "consumers.routing"} <= set(
        modules
    )
    found = [problem for module, source in modules.items() for problem in violations(module, source)]
    assert found == []


def test_the_check_catches_each_kind_of_forbidden_import():
    assert violations("roster.ingest.service", "from roster.live.broadcast import publisher") == [
        "roster.ingest.service (ingest) imports roster.live.broadcast (live), a layer above it",
        "roster.ingest.service (ingest) imports roster.live.broadcast.publisher (live), a layer above it",
    ]
    assert violations("roster.domain.plan", "def f():\n    from django.db import connection\n") == [
        "roster.domain.plan imports django.db: the domain is pure Python",
        "roster.domain.plan imports django.db.connection: the domain is pure Python",
    ]
    assert violations("roster.web.views", "import roster.dev.chime") == [
        "roster.web.views imports roster.dev.chime: the product never imports the developer tools"
    ]
    assert violations("roster.read.selectors", "from ..ops import metrics") == [
        "roster.read.selectors (read) imports roster.ops (ops), a layer above it",
        "roster.read.selectors (read) imports roster.ops.metrics (ops), a layer above it",
    ]
    assert violations("consumers.feed", "from roster.dev import demo") != []
    assert violations("consumers.counted", "import roster.ops.metrics") == [
        "consumers.counted imports roster.ops.metrics (ops): a consumer stops at the live layer"
    ]
    assert violations("roster.management.commands.demo", "from roster.dev.demo import demo_run") == []
    assert violations("roster.ops.views", "from roster.read.selectors import queue_lag_get") == []
