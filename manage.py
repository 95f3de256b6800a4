#!/usr/bin/env python
"""Django's command-line utility for chime-roster."""

import os
import sys
from pathlib import Path


def demo_secret_key() -> None:
    """`manage.py demo` runs with DEBUG off, as a deployment does, so it needs a SECRET_KEY: unless
    the environment or .env sets one, it makes one for this run, which every child inherits."""
    import secrets

    import environ

    environ.Env.read_env(Path(__file__).resolve().parent / ".env", overwrite=False)  # as the settings do
    if not os.environ.get("SECRET_KEY"):
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if sys.argv[1:2] == ["demo"]:
        demo_secret_key()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
