"""Diagram scripts and Python expressions run in worker processes that can be killed.

The in-process sandbox (:mod:`engine.sandbox`) counts steps and checks its clocks
between Python operations, but one C-level operation is not interruptible: comparing
two deeply self-aliased tuples, ``sorted()`` of a huge list or a pathological
``str`` method holds the GIL until it ends, and with it every thread of the web
server.  So every script and Python condition runs in a separate worker process:

* Workers are plain ``python -I`` processes started with ``subprocess`` (fork + exec),
  so they never share the parent's database connections, locks or threads; they
  import only the sandbox, never the database layer.  This works the same under
  the web server's threads, the scheduler, the CLI and pytest-xdist.
* A pool keeps started workers and reuses them (one request at a time per worker);
  a worker that is killed is replaced in the background.  The per-call cost is a
  pickle of the variables the code names, a pipe round trip and a pickle of the
  variables it changed.
* The parent waits with a hard deadline: it kills the worker when the run's wall
  time passes ``wall_time`` or the worker's CPU time (read from ``/proc``) passes
  ``cpu_time``, each plus a short grace period in which the worker's own checks
  usually stop the script first with a precise message and line number.
* The worker limits its address space (``RLIMIT_AS``) to its size at the start of
  the run plus ``max_memory_growth``.
* Functions offered to scripts (the hospital calendar functions) are trusted host
  code: the worker calls them back in the parent, which answers with the result or
  the exception.
* What comes back from a worker is unpickled with a whitelist of plain data types
  (containers, numbers, text, dates, ``Decimal``, time zones): even a worker whose
  sandbox was escaped cannot make the parent build other objects.

The public entry point is :func:`run_isolated`, used by
:class:`engine.sandbox.SandboxedEnvironment`.
"""

from __future__ import annotations

import atexit
import builtins
import datetime as _datetime
import decimal
import functools
import io
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
import types
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["pool_size", "prestart", "run_isolated", "shutdown"]

_log = logging.getLogger(__name__)

_ROOT = str(Path(__file__).resolve().parent.parent)
_HEADER = struct.Struct("!Q")
#: Largest message accepted from a worker (the sandbox's own output limit is far below).
_MAX_MESSAGE = 512 * 1024 * 1024
#: Seconds the parent waits past a limit before it kills the worker (the worker's own
#: checks normally stop the script first, with the line it was on).
KILL_GRACE = 0.5
#: Workers kept idle for reuse.
MAX_IDLE = 4
#: Seconds a new worker may take to start and say it is ready.
START_TIMEOUT = 30.0
#: How often the parent samples the worker's CPU time while it waits.
_POLL_INTERVAL = 0.05
#: Extra address space allowed beyond the memory growth limit (pickling the results).
_MEMORY_SLACK = 64 * 1024 * 1024

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------- framing


def _write_message(fd: int, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


class _WorkerGone(Exception):
    """The worker closed its pipe (it died or was killed)."""


class _Deadline(Exception):
    """The run passed its wall or CPU budget."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- restricted pickles


def _zone_id(obj: Any) -> Any:
    if type(obj) is zoneinfo.ZoneInfo and obj.key:
        return ("zoneinfo", obj.key)
    return None


def _dumps(value: Any) -> bytes:
    """Pickle with time zones by name (ZoneInfo's own pickle goes through a classmethod)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.persistent_id = _zone_id  # type: ignore[method-assign]
    pickler.dump(value)
    return buffer.getvalue()


_ALLOWED_GLOBALS: dict[tuple[str, str], type] = {
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "complex"): complex,
    ("builtins", "range"): range, ("builtins", "slice"): slice,
    ("datetime", "datetime"): _datetime.datetime, ("datetime", "date"): _datetime.date,
    ("datetime", "time"): _datetime.time, ("datetime", "timedelta"): _datetime.timedelta,
    ("datetime", "timezone"): _datetime.timezone,
    ("decimal", "Decimal"): decimal.Decimal,
}


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain data: anything else is an ``UnpicklingError``."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "zoneinfo" and isinstance(pid[1], str):
            try:
                return zoneinfo.ZoneInfo(pid[1])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise pickle.UnpicklingError(f"unknown time zone {pid[1]!r}") from exc
        raise pickle.UnpicklingError("unsupported persistent id")


def _plain_loads(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


def _loads(data: bytes) -> Any:
    """Worker side: the parent is trusted, but time zones come by name."""
    unpickler = pickle.Unpickler(io.BytesIO(data))
    unpickler.persistent_load = _zone_load  # type: ignore[method-assign]
    return unpickler.load()


def _zone_load(pid: Any) -> Any:
    if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "zoneinfo":
        return zoneinfo.ZoneInfo(pid[1])
    raise pickle.UnpicklingError("unsupported persistent id")


# --------------------------------------------------------------------------- names a code object uses


def code_names(code: types.CodeType) -> frozenset[str]:
    """Every name the code (and the functions and comprehensions in it) may read or write.

    The sandbox refuses ``globals()``/``locals()``/``vars()``/``dir()``, so a script can
    only reach a variable by naming it: the worker is only sent these variables."""
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        names.update(current.co_varnames)
        names.update(current.co_freevars)
        names.update(current.co_cellvars)
        stack.extend(const for const in current.co_consts if isinstance(const, types.CodeType))
    return frozenset(names)


# --------------------------------------------------------------------------- exceptions across the pipe


def _exception_info(exc: BaseException, lineno: int | None) -> dict[str, Any]:
    from engine.sandbox import SandboxViolation

    try:
        args = _dumps(exc.args)
    except Exception:  # noqa: BLE001 - arguments that do not pickle are sent as text
        args = _dumps((str(exc),))
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "args": args,
        "message": str(exc),
        "lineno": exc.lineno if isinstance(exc, SandboxViolation) else lineno,
        "errors": list(exc.errors) if isinstance(exc, SandboxViolation) else None,
        "host": getattr(exc, "sandbox_host_token", None),
    }


def _builtin_base(cls: type) -> type[Exception]:
    """The nearest built-in exception class of ``cls`` (what the script can catch)."""
    for base in cls.__mro__:
        if base.__module__ == "builtins" and issubclass(base, Exception):
            return base
    return Exception


def _rebuild_exception(info: Mapping[str, Any], host_errors: Mapping[int, BaseException]) -> BaseException:
    from engine.sandbox import SandboxTimeout, SandboxViolation

    token = info.get("host")
    if isinstance(token, int) and token in host_errors:
        return host_errors[token]  # a host function's own exception, passed through the script
    name, module, message = str(info.get("type")), str(info.get("module")), str(info.get("message"))
    lineno = info.get("lineno") if isinstance(info.get("lineno"), int) else None
    if module == "engine.sandbox" and name in ("SandboxViolation", "SandboxTimeout"):
        cls = SandboxTimeout if name == "SandboxTimeout" else SandboxViolation
        errors = info.get("errors")
        return cls(message, lineno=lineno,
                   errors=[str(e) for e in errors] if isinstance(errors, list) else ())
    try:
        args = _plain_loads(info["args"])
        if not isinstance(args, tuple):
            raise TypeError
    except Exception:  # noqa: BLE001 - fall back to the message
        args = (message,)
    cls: Any = None
    if module == "builtins":
        cls = getattr(builtins, name, None)
    elif module == "decimal":
        cls = getattr(decimal, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = RuntimeError
        args = (f"{name}: {message}",)
    try:
        exc = cls(*args)
    except Exception:  # noqa: BLE001 - a constructor that wants other arguments
        exc = cls(message)
    if lineno is not None and not isinstance(exc, SyntaxError):
        exc.sandbox_lineno = lineno  # type: ignore[attr-defined]
    return exc


# --------------------------------------------------------------------------- the parent side


def _cpu_seconds(stat_fd: int | None) -> float | None:
    """CPU time (user + system) of a process from its open /proc/<pid>/stat (Linux), or None."""
    if stat_fd is None:
        return None
    try:
        stat = os.pread(stat_fd, 1024, 0)
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (IndexError, ValueError):
        return None


class _Worker:
    """One worker process and its pipes."""

    def __init__(self) -> None:
        code = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from engine.sandbox_worker import _worker_main; _worker_main()")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", code, _ROOT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.write_fd = self.proc.stdin.fileno()
        self.read_fd = self.proc.stdout.fileno()
        self.buffer = bytearray()
        self.ready = False
        self.retired = False
        try:
            self.stat_fd: int | None = os.open(f"/proc/{self.proc.pid}/stat", os.O_RDONLY)
        except OSError:
            self.stat_fd = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.retired and self.proc.poll() is None

    def wait_ready(self) -> None:
        message = self.receive(time.monotonic() + START_TIMEOUT, None, None)
        if message != ("ready",):
            raise _WorkerGone("the script worker did not start")
        self.ready = True

    def send(self, message: Any) -> None:
        try:
            _write_message(self.write_fd, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerGone(str(exc)) from exc

    def receive(self, wall_deadline: float, cpu_limit: float | None, cpu_start: float | None) -> Any:
        """The next message; raises _Deadline past a limit and _WorkerGone on EOF."""
        while True:
            if len(self.buffer) >= _HEADER.size:
                (length,) = _HEADER.unpack_from(self.buffer)
                if length > _MAX_MESSAGE:
                    raise _WorkerGone("the script worker sent a message that is too large")
                if len(self.buffer) >= _HEADER.size + length:
                    payload = bytes(self.buffer[_HEADER.size:_HEADER.size + length])
                    del self.buffer[:_HEADER.size + length]
                    return _plain_loads(payload)
            now = time.monotonic()
            if now >= wall_deadline:
                raise _Deadline("wall")
            ready, _, _ = select.select([self.read_fd], [], [], min(_POLL_INTERVAL, wall_deadline - now))
            if not ready and cpu_limit is not None and cpu_start is not None:
                used = _cpu_seconds(self.stat_fd)
                if used is not None and used - cpu_start > cpu_limit:
                    raise _Deadline("cpu")
            if ready:
                try:
                    chunk = os.read(self.read_fd, 1 << 20)
                except OSError as exc:
                    raise _WorkerGone(str(exc)) from exc
                if not chunk:
                    raise _WorkerGone("the script worker ended")
                self.buffer += chunk

    def kill(self) -> None:
        self.retired = True
        try:
            self.proc.kill()
        except OSError:
            pass
        self._reap()

    def close(self) -> None:
        self.retired = True
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self.stat_fd is not None:
            os.close(self.stat_fd)
            self.stat_fd = None
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill is not refused
            _log.warning("script worker %s did not end after kill", self.pid)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []
        self.pid = os.getpid()
        self.replacing = 0

    def _check_fork(self) -> None:
        # After a fork the pipes belong to the parent process: start afresh.
        if self.pid != os.getpid():
            self.idle = []
            self.replacing = 0
            self.pid = os.getpid()
            self.lock = threading.Lock()

    def acquire(self) -> _Worker:
        self._check_fork()
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if worker.alive():
                    return worker
                worker.kill()
        worker = _Worker()
        try:
            worker.wait_ready()
        except BaseException:
            worker.kill()
            raise
        return worker

    def release(self, worker: _Worker) -> None:
        if self.pid != os.getpid() or not worker.alive():
            worker.kill()
            return
        with self.lock:
            if len(self.idle) < MAX_IDLE:
                self.idle.append(worker)
                return
        worker.close()

    def replace_in_background(self) -> None:
        """Start a worker for the next caller (after one was killed)."""
        with self.lock:
            if self.replacing or len(self.idle) >= MAX_IDLE:
                return
            self.replacing += 1

        def start() -> None:
            try:
                worker = _Worker()
                worker.wait_ready()
            except Exception:  # noqa: BLE001 - the next caller starts one itself
                _log.exception("could not start a script worker")
                return
            finally:
                with self.lock:
                    self.replacing -= 1
            self.release(worker)

        threading.Thread(target=start, name="sandbox-worker-start", daemon=True).start()

    def shutdown(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.close()


_pool = _Pool()
atexit.register(_pool.shutdown)


def prestart(count: int = 1) -> None:
    """Start ``count`` workers now, so the first script does not wait for one."""
    workers = [_pool.acquire() for _ in range(count)]
    for worker in workers:
        _pool.release(worker)


def pool_size() -> int:
    """Idle workers in the pool (for tests and monitoring)."""
    return len(_pool.idle)


def shutdown() -> None:
    """Stop the idle workers (they are also stopped at exit)."""
    _pool.shutdown()


def _prepare(values: Mapping[str, Any], kind: str, hosts: list[Callable[..., Any]],
             wanted: frozenset[str] | None) -> tuple[dict[str, bytes], dict[str, int]]:
    """Pickle the values the code may use; callables become host functions."""
    from engine.sandbox import SandboxViolation

    data: dict[str, bytes] = {}
    functions: dict[str, int] = {}
    for name, value in values.items():
        if not isinstance(name, str) or name.startswith("_") or (wanted is not None and name not in wanted):
            continue
        if callable(value) and not isinstance(value, type):
            functions[name] = len(hosts)
            hosts.append(value)
            continue
        try:
            data[name] = _dumps(value)
        except Exception as exc:  # noqa: BLE001 - reported with the variable's name
            raise SandboxViolation(f"{kind} {name!r} holds a {type(value).__name__} object, which cannot be "
                                   f"passed to a script ({exc})") from None
    return data, functions


def run_isolated(mode: str, source: str, code: types.CodeType, context: dict[str, Any],
                 external: Mapping[str, Any], environment_globals: Mapping[str, Any], limits: Any) -> Any:
    """Run ``source`` in a worker: ``mode`` "eval" returns the expression's value, "exec"
    applies the script's changes to ``context`` (only when it succeeds)."""
    from engine.sandbox import SandboxTimeout, SandboxViolation

    wanted = code_names(code)
    hosts: list[Callable[..., Any]] = []
    global_data, global_functions = _prepare(environment_globals, "environment value", hosts, wanted)
    external_data, external_functions = _prepare(external, "value", hosts, wanted)
    variables, variable_functions = _prepare(context, "variable", hosts, wanted)
    request = ("run", mode, source, limits, global_data, global_functions, external_data, external_functions,
               variables, variable_functions)

    worker = _pool.acquire()
    started = time.monotonic()
    cpu_start = _cpu_seconds(worker.stat_fd)
    wall_deadline = started + limits.wall_time + KILL_GRACE
    cpu_limit = limits.cpu_time + KILL_GRACE
    host_errors: dict[int, BaseException] = {}
    keep = False
    try:
        worker.send(request)
        while True:
            message = worker.receive(wall_deadline, cpu_limit, cpu_start)
            kind = message[0]
            if kind == "call":
                _answer_host_call(worker, hosts, message, host_errors)
                continue
            if kind == "retire":  # the worker ends itself after this answer (out of memory)
                worker.retired = True
                continue
            keep = True
            if kind == "error":
                raise _rebuild_exception(message[1], host_errors)
            if kind == "done":
                return _apply(mode, message[1], context)
            keep = False
            raise SandboxViolation(f"the script worker sent an unknown message {kind!r}")
    except _Deadline as deadline:
        if deadline.message == "cpu":
            raise SandboxTimeout(f"script stopped: it used more than {limits.cpu_time:g} s of CPU time") from None
        raise SandboxTimeout(f"script stopped: it ran longer than {limits.wall_time:g} s") from None
    except _WorkerGone:
        raise SandboxViolation("script stopped: its worker process ended (it ran out of memory or was "
                               "stopped)") from None
    except pickle.UnpicklingError as exc:
        raise SandboxViolation(f"the script returned a value that is not plain data: {exc}") from None
    finally:
        if keep and not worker.retired:
            _pool.release(worker)
        else:
            worker.kill()
            _pool.replace_in_background()


def _answer_host_call(worker: _Worker, hosts: list[Callable[..., Any]], message: tuple,
                      host_errors: dict[int, BaseException]) -> None:
    index, arguments = message[1], message[2]
    try:
        if not isinstance(index, int) or not 0 <= index < len(hosts):
            raise ValueError("unknown host function")
        args, kwargs = _plain_loads(arguments)
        result = hosts[index](*args, **kwargs)
        answer = ("return", _dumps(result))
    except Exception as exc:  # noqa: BLE001 - handed to the script, which may catch it
        token = len(host_errors) + 1
        host_errors[token] = exc
        answer = ("raise", token, _builtin_base(type(exc)).__name__, str(exc))
    worker.send(answer)


def _apply(mode: str, payload: Any, context: dict[str, Any]) -> Any:
    from engine.sandbox import SandboxViolation

    if mode == "eval":
        return _plain_loads(payload)
    changed, removed = payload
    updates: dict[str, Any] = {}
    for name, data in changed.items():
        try:
            updates[name] = _plain_loads(data)
        except pickle.UnpicklingError as exc:
            raise SandboxViolation(f"{name!r} is not plain data and cannot be stored ({exc})") from None
    context.update(updates)
    for name in removed:
        context.pop(name, None)
    return True


# --------------------------------------------------------------------------- the worker side


class _Channel:
    """The worker's end of the pipes."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd

    def send(self, message: Any) -> None:
        _write_message(self.write_fd, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self) -> Any:
        header = self._read_exact(_HEADER.size)
        if header is None:
            return None
        (length,) = _HEADER.unpack(header)
        payload = self._read_exact(length)
        if payload is None:
            return None
        return pickle.loads(payload)  # from the parent, which is trusted

    def _read_exact(self, size: int) -> bytes | None:
        parts = bytearray()
        while len(parts) < size:
            chunk = os.read(self.read_fd, size - len(parts))
            if not chunk:
                return None
            parts += chunk
        return bytes(parts)


def _host_function(channel: _Channel, index: int, name: str) -> Callable[..., Any]:
    from engine.sandbox import SandboxViolation

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            arguments = _dumps((args, kwargs))
        except Exception:  # noqa: BLE001 - e.g. a function passed as an argument
            raise SandboxViolation(f"{name}() can only be given plain data") from None
        channel.send(("call", index, arguments))
        answer = channel.receive()
        if answer is None:
            raise SystemExit(0)
        if answer[0] == "return":
            return _loads(answer[1])
        _, token, base, message = answer
        cls = getattr(builtins, base, Exception)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            cls = Exception
        exc = cls(message)
        exc.sandbox_host_token = token  # type: ignore[attr-defined]
        raise exc

    call.__name__ = name
    return call


@functools.lru_cache(maxsize=1)
def _statm_fd() -> int:
    return os.open("/proc/self/statm", os.O_RDONLY)


def _set_memory_limit(limits: Any) -> None:
    import resource

    growth = limits.max_memory_growth
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if growth is None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        return
    size = int(os.pread(_statm_fd(), 128, 0).split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft = size + growth + _MEMORY_SLACK
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _serve(channel: _Channel, request: tuple) -> None:
    from engine.sandbox import SandboxedEnvironment, SandboxViolation, _traceback_lineno

    (_, mode, source, limits, global_data, global_functions, external_data, external_functions,
     variables, variable_functions) = request

    def values(data: Mapping[str, bytes], functions: Mapping[str, int]) -> dict[str, Any]:
        result = {name: _loads(blob) for name, blob in data.items()}
        result.update({name: _host_function(channel, index, name) for name, index in functions.items()})
        return result

    environment_globals = values(global_data, global_functions)
    external = values(external_data, external_functions)
    context = values(variables, variable_functions)
    environment = SandboxedEnvironment(environment_globals, limits, isolation="inline")
    if sys.platform.startswith("linux"):
        _set_memory_limit(limits)
    out_of_memory = False
    try:
        if mode == "eval":
            result = environment.evaluate(source, context, external)
            try:
                reply: tuple = ("done", _dumps(result))
            except Exception:  # noqa: BLE001
                raise SandboxViolation(f"the expression's value ({type(result).__name__}) is not plain data")\
                    from None
        else:
            environment.execute(source, context, external)
            changed: dict[str, bytes] = {}
            for name, value in context.items():
                if name in variable_functions:
                    continue
                try:
                    blob = _dumps(value)
                except Exception:  # noqa: BLE001
                    raise SandboxViolation(f"{name!r} holds a {type(value).__name__} object; only plain data "
                                           "can be stored") from None
                if variables.get(name) != blob:
                    changed[name] = blob
            removed = [name for name in (*variables, *variable_functions) if name not in context]
            reply = ("done", (changed, removed))
    except MemoryError as exc:
        out_of_memory = True
        reply = ("error", _exception_info(SandboxViolation("out of memory"), _traceback_lineno(exc)))
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
        out_of_memory = isinstance(exc, SandboxViolation) and str(exc) == "out of memory"
        reply = ("error", _exception_info(exc, _traceback_lineno(exc)))
    finally:
        if sys.platform.startswith("linux"):
            import resource

            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    if out_of_memory:
        channel.send(("retire",))
    channel.send(reply)
    if out_of_memory:
        raise SystemExit(0)


def _worker_main() -> None:
    """Entry point of a worker process: answer run requests until stdin closes."""
    import signal

    import engine.sandbox  # noqa: F401 - import (and compile) everything before the first request

    # Ctrl+C in a terminal reaches the whole process group: the parent decides, and the worker
    # ends when the parent closes its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    read_fd = os.dup(0)
    write_fd = os.dup(1)
    # Whatever else writes to stdout must not corrupt the protocol.
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    channel = _Channel(read_fd, write_fd)
    channel.send(("ready",))
    while True:
        try:
            request = channel.receive()
        except (OSError, EOFError):
            return
        if request is None:
            return
        if request[0] != "run":
            continue
        _serve(channel, request)

