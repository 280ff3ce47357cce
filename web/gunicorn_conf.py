"""gunicorn's settings for the web workers (`hospital-workflow-serve` runs gunicorn with this file).

Run by hand the same way: ``gunicorn -c python:web.gunicorn_conf 'web:create_app()'``. Bind address
and the number of workers and threads come from HOST, PORT, WEB_WORKERS and WEB_THREADS (README,
Settings); the serve command checks them and passes them on.

Only the web requests run here. The timer scheduler and the SMS worker run once per service in the
serve command's own process (web/serve.py explains why not in gunicorn's arbiter).
"""

from __future__ import annotations

import threading

from web.serve import ServeSettings, configure_logging, follow_parent

_settings = ServeSettings.from_env()

bind = f"{_settings.bind_host}:{_settings.port}"
workers = _settings.workers
# threads: a browser's keep-alive connection or a slow client holds a thread, not a whole worker
# (there is no buffering proxy in front of `make run`)
worker_class = "gthread"
threads = _settings.threads
timeout = 60  # a worker silent this long is replaced; a script's own wall limit is 10 s
graceful_timeout = 20
keepalive = 5
# Access log on stdout with the worker's pid, without referrer (its query string may hold a
# search) and without the query values of the request line (the patient-data filter below).
accesslog = "-"
access_log_format = '%(h)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms %(p)s'
# gunicorn 25+ opens a control socket in the home directory by default: two services on one
# machine (or `make run` beside the tests) would fight over it
control_socket_disable = True
# the app is loaded in each worker after the fork: no database connection or thread crosses it
preload_app = False


def on_starting(server) -> None:
    # root handlers (inherited by the workers) and gunicorn's loggers with the patient-data filter
    configure_logging()
    follow_parent()  # started by hospital-workflow-serve: end with it


def post_fork(server, worker) -> None:
    configure_logging()
    from engine import sandbox_worker

    # the script worker pool of this web worker (the pool starts afresh in a forked process);
    # started now, not on the first script a user's step runs
    threading.Thread(target=sandbox_worker.prestart, name="sandbox-prestart", daemon=True).start()

