"""The tests' password hasher: Django's own PBKDF2-SHA256 at 1,000 iterations instead of
Django's default (over a million, about 0.4 s of CPU per hash; a user is made in many tests).

Same algorithm name and format: the number of iterations is stored in each hash, so a password
hashed here verifies in a process started by a test (Daphne, manage.py) with the default
hasher, which re-hashes it at its own count on sign-in, as it would an old hash. Only the cost
differs; every check of a password is the real one."""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1_000
