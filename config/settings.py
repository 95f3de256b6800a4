"""Settings, all read from the environment (django-environ). See README.md for the list."""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.namespace import namespace_default

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

# Required when DEBUG is off. With DEBUG on and no key: one fixed, public development key, so that
# every process (Daphne, Celery, manage.py) signs and checks sessions and host links alike; a random
# key per process would void in Daphne the host link `manage.py host_link` printed. The
# "django-insecure-" prefix makes `check --deploy` flag it (security.W009).
DEVELOPMENT_SECRET_KEY = "django-insecure-chime-roster-development-key-never-deploy-it"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set and DEBUG is off: set SECRET_KEY in the environment (or .env) to a "
            "long random value, the same for every process of the deployment. Make one with: "
            'python -c "import secrets; print(secrets.token_urlsafe(50))" '
            "(for development only, DEBUG=true uses a public key instead)."
        )
    SECRET_KEY = DEVELOPMENT_SECRET_KEY
# Earlier keys still accepted when checking signatures: change SECRET_KEY without signing everybody
# out, then drop the old key once what it signed has expired.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS, behind a proxy that terminates TLS (docs/operations.md, "Production settings"). The
# defaults keep plain http working: the demo, the tests, a development server.
SECURE_PROXY_SSL_HEADER = env.tuple("SECURE_PROXY_SSL_HEADER", default=None) or None
if SECURE_PROXY_SSL_HEADER is not None and len(SECURE_PROXY_SSL_HEADER) != 2:
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER is a header and the value that means https, comma separated: "
        "HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Load balancers and Prometheus probe the backend over plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "roster",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The embedded default is a SQLite file; PostgreSQL in production and CI.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, drain threads, the demo) share the file. WAL lets readers run beside
    # the writer; IMMEDIATE takes the write lock when a transaction begins, so a writer waits
    # (up to `timeout` seconds) instead of failing "database is locked" when it upgrades a read.
    _sqlite = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite.setdefault("timeout", 30)
    _sqlite.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite.setdefault("init_command", "PRAGMA journal_mode=WAL;")
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT: it compiles any query the planner costs above jit_above_cost, and a meeting list
    # search (a correlated EXISTS over 500,000 attendees is costed in the millions) then spent
    # 100 to 140 ms compiling to answer in 5 to 15 ms (docs/benchmarks.md, issue #13). Reads
    # here are short OLTP queries; none gains from JIT.
    _postgres = DATABASES["default"].setdefault("OPTIONS", {})
    _postgres["options"] = f"{_postgres.get('options', '')} -c jit=off".strip()
# The ingest's row writes run as a statement each session prepares once (PREPARE, EXECUTE): off
# behind a pooler in transaction mode (PgBouncer's), where a session's prepared statements do not
# follow its transactions to another server connection.
INGEST_PREPARED_STATEMENTS = env.bool("INGEST_PREPARED_STATEMENTS", default=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# Hosts sign in at the project's own page (roster.web.urls); staff may too, and keep /admin/.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# Password reset mails: a django-environ email URL (smtp+tls://user:password@host:587 in
# production); the default console backend prints each mail to the web process's output. What the
# URL leaves out keeps Django's default.
_email = env.email_url("EMAIL_URL", default="consolemail://")
globals().update({name: value for name, value in _email.items() if value is not None})
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="chime-roster <noreply@localhost>")

# Host links (roster.read.host_links): printed on this base URL, living at most this long.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
HOST_LINK_MAX_HOURS = env.float("HOST_LINK_MAX_HOURS", default=24.0)

# Open sockets ask again this often whether their token, user or host link still grants what it
# did (consumers.access_watch: one round of queries per Daphne process, not per socket). Revoked
# access must stop within 5 s (DESIGN.md), so keep it well below that.
ACCESS_RECHECK_SECONDS = env.float("ACCESS_RECHECK_SECONDS", default=2.0)

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# Every Redis channel, group and key of this deployment carries this name (config/namespace.py):
# deployments sharing a Redis server never hear each other.
ROSTER_NAMESPACE = env.str("ROSTER_NAMESPACE", default="") or namespace_default(
    database=DATABASES["default"], redis_url=REDIS_URL
)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # The prefix of every Redis channel of the layer; the broadcaster (roster.live.layer) reads it
        # from here too.
        "CONFIG": {"hosts": [REDIS_URL], "prefix": ROSTER_NAMESPACE},
    }
}

# Celery: Redis is the broker. SQS is drained with boto3 directly (roster.sources.sqs), never as a broker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Every key kombu writes (queues, unacked, pidbox, fan-out channels) under this deployment's name.
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{ROSTER_NAMESPACE}:"}
# Queue backlog and in-flight counts (GetQueueAttributes) for admin, /metrics and the dashboard.
QUEUE_HEALTH_SECONDS = env.float("QUEUE_HEALTH_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE = {
    "queue-health-refresh": {
        "task": "roster.tasks.queue_health_refresh",
        "schedule": QUEUE_HEALTH_SECONDS,
        "options": {"expires": QUEUE_HEALTH_SECONDS},  # a stale check is worth nothing
    },
}
# Reconcile (roster.sources.reconcile, docs/reconcile.md): active meetings checked against the
# Chime SDK Meetings API at most this often (0 = off), within RECONCILE_CALLS_PER_SECOND calls a
# second across every process of the deployment (a cycle lasts as long as the budget needs).
RECONCILE_SECONDS = env.float("RECONCILE_SECONDS", default=60.0)
RECONCILE_CALLS_PER_SECOND = env.float("RECONCILE_CALLS_PER_SECOND", default=5.0)
# The control region of meetings whose events named none (bare details); blank: not reconciled.
CHIME_CONTROL_REGION = env.str("CHIME_CONTROL_REGION", default="")
if RECONCILE_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["meetings-reconcile"] = {
        "task": "roster.tasks.meetings_reconcile",
        "schedule": RECONCILE_SECONDS,
        "options": {"expires": RECONCILE_SECONDS},  # a cycle still running takes the next tick's place
    }

# Outbound hooks (roster.hooks, docs/hooks.md). Loopback http:// targets only when allowed (the
# demo, tests); retries back off exponentially (with jitter) from BASE to MAX seconds for
# RETRY_HOURS, then the delivery is dead; BREAKER_FAILURES consecutive failures break a hook,
# which then sends one probe every BREAKER_COOLDOWN_SECONDS until one succeeds.
HOOKS_ALLOW_HTTP_LOOPBACK = env.bool("HOOKS_ALLOW_HTTP_LOOPBACK", default=False)
HOOKS_TIMEOUT_SECONDS = env.float("HOOKS_TIMEOUT_SECONDS", default=10.0)
HOOKS_RETRY_BASE_SECONDS = env.float("HOOKS_RETRY_BASE_SECONDS", default=10.0)
HOOKS_RETRY_MAX_SECONDS = env.float("HOOKS_RETRY_MAX_SECONDS", default=3600.0)
HOOKS_RETRY_HOURS = env.float("HOOKS_RETRY_HOURS", default=24.0)
HOOKS_BREAKER_FAILURES = env.int("HOOKS_BREAKER_FAILURES", default=10)
HOOKS_BREAKER_COOLDOWN_SECONDS = env.float("HOOKS_BREAKER_COOLDOWN_SECONDS", default=300.0)
HOOKS_MAX_BODY_BYTES = env.int("HOOKS_MAX_BODY_BYTES", default=262144)
HOOKS_ROTATION_HOURS = env.float("HOOKS_ROTATION_HOURS", default=24.0)
# How long a process keeps its list of hooks (ingest's hot path reads none): a hook made or changed
# in another process is seen within this.
HOOKS_CACHE_SECONDS = env.float("HOOKS_CACHE_SECONDS", default=2.0)
HOOKS_SWEEP_SECONDS = env.float("HOOKS_SWEEP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["hook-deliveries-sweep"] = {
    "task": "roster.tasks.hook_deliveries_run",
    "schedule": HOOKS_SWEEP_SECONDS,
    "options": {"expires": HOOKS_SWEEP_SECONDS},
}
# Delivered deliveries (and the payloads nothing points at any more) are forgotten after this;
# dead and pending ones are kept. Beat prunes every HOOKS_PRUNE_SECONDS.
HOOKS_KEEP_HOURS = env.float("HOOKS_KEEP_HOURS", default=72.0)
HOOKS_PRUNE_SECONDS = env.float("HOOKS_PRUNE_SECONDS", default=3600.0)
CELERY_BEAT_SCHEDULE["hook-outbox-prune"] = {
    "task": "roster.tasks.hook_outbox_prune",
    "schedule": HOOKS_PRUNE_SECONDS,
    "options": {"expires": HOOKS_PRUNE_SECONDS},
}

# SQS and Chime
SQS_QUEUE_URLS = env.list("SQS_QUEUE_URLS", default=[])
AWS_REGION = env.str("AWS_REGION", default=env.str("AWS_DEFAULT_REGION", default="us-east-1"))
AWS_ENDPOINT_URL_SQS = env.str("AWS_ENDPOINT_URL_SQS", default="") or None
SQS_WAIT_SECONDS = env.int("SQS_WAIT_SECONDS", default=20)
SQS_MAX_MESSAGES = env.int("SQS_MAX_MESSAGES", default=10)
# Messages gathered into one ingest transaction: after a full receive (more is waiting), receive
# again without waiting, up to this many. A quiet queue still gives one receive per transaction;
# a backlog (a join burst) gives fewer, larger transactions, which is what keeps a busy meeting's
# row lock from serialising the drain (docs/benchmarks-live.md). 10 = never gather.
SQS_BATCH_MESSAGES = env.int("SQS_BATCH_MESSAGES", default=100)
# ... but only when the drain is behind: the full receive's oldest message waited at least this
# long. A drain that keeps up would otherwise pay an empty receive after every full one.
SQS_GATHER_AFTER_SECONDS = env.float("SQS_GATHER_AFTER_SECONDS", default=0.05)
# A worker holds at most this many drain slots of one queue; QueueSource.consumers caps all workers.
SQS_SLOTS_PER_WORKER = env.int("SQS_SLOTS_PER_WORKER", default=2)
# Drain threads inside every Celery worker (roster.sources.bootsteps.DrainStep).
SQS_DRAIN_IN_WORKER = env.bool("SQS_DRAIN_IN_WORKER", default=True)
CHIME_ALLOWED_ACCOUNTS = env.list("CHIME_ALLOWED_ACCOUNTS", default=[])
MAX_MESSAGE_BYTES = env.int("MAX_MESSAGE_BYTES", default=262144)
# SNS HTTPS endpoint (/sns/): topics whose messages are accepted; empty accepts none.
SNS_ALLOWED_TOPIC_ARNS = env.list("SNS_ALLOWED_TOPIC_ARNS", default=[])

# Limits per websocket (docs/feed.md, "Limits"). A client over them gets an error frame
# (rate_limited, too_large, too_many_meetings) and keeps its socket; one that stops reading is
# closed 4408 once more than SOCKET_MAX_PENDING_BYTES wait to be sent to it (consumers.backlog).
SOCKET_REQUESTS_PER_SECOND = env.float("SOCKET_REQUESTS_PER_SECOND", default=10.0)
SOCKET_REQUESTS_BURST = env.int("SOCKET_REQUESTS_BURST", default=50)
SOCKET_MAX_MEETINGS = env.int("SOCKET_MAX_MEETINGS", default=1000)
SOCKET_MAX_FRAME_BYTES = env.int("SOCKET_MAX_FRAME_BYTES", default=131072)
SOCKET_MAX_PENDING_BYTES = env.int("SOCKET_MAX_PENDING_BYTES", default=4194304)
# Ids a socket subscribes to before the roster knows them, looked up in the Chime API (0 = never).
SOCKET_LOOKUPS_PER_MINUTE = env.int("SOCKET_LOOKUPS_PER_MINUTE", default=10)

# Operations: /healthz, /metrics, the queue lag warning in the dashboard header.
# /metrics answers `Authorization: Bearer <METRICS_TOKEN>`; empty: staff sessions only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# /healthz calls GetQueueAttributes per queue at most this often (per process).
HEALTH_QUEUE_CACHE_SECONDS = env.float("HEALTH_QUEUE_CACHE_SECONDS", default=5.0)
# The dashboard header warns when the oldest waiting message is older than this.
QUEUE_LAG_WARN_SECONDS = env.float("QUEUE_LAG_WARN_SECONDS", default=30.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}
