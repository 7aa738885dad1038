"""Calls from the trusted grader into a student's kernel, with data (never code of the grader's) crossing the wall.

The grader never sends a hidden test into the student's kernel. It runs the hidden test itself, in its own process,
with ``student`` bound to a :class:`Remote`: every ``student.name(...)`` becomes one request, written to a file in
the sandbox's exchange folder in the safe :mod:`~course_utils.course.wire` format; the kernel runs
:func:`serve`, which calls the student's object on the decoded arguments and writes the result back in the same
format. Tensors and plain data come back as values; anything else (a model, a generator function) stays in the kernel
and comes back as a :class:`RemoteObject` whose methods are called the same way.

Kernel side: :func:`serve` (and nothing else of this module runs in the sandbox). Grader side: :class:`Remote`,
:class:`RemoteObject`, :class:`StudentError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

from . import wire

__all__ = ["serve", "Remote", "RemoteRef", "RemoteObject", "RemoteCode", "StudentError", "RpcFailure"]

# ----------------------------------------------------------------------------------------------------------------
# kernel side
# ----------------------------------------------------------------------------------------------------------------
_objects: dict[int, Any] = {}


def _to_handle(obj: Any) -> wire.Handle:
    i = len(_objects) + 1
    _objects[i] = obj
    return wire.Handle(i, f"{type(obj).__module__}.{type(obj).__qualname__}")


def _namespace() -> dict:
    try:
        return get_ipython().user_ns  # type: ignore[name-defined]  # noqa: F821 - provided by IPython
    except NameError:  # pragma: no cover - outside IPython
        import __main__

        return __main__.__dict__


def _resolve(target: Any, ns: dict) -> Any:
    if not isinstance(target, dict) or not isinstance(target.get("path"), list):
        raise ValueError("malformed target")
    if "handle" in target:
        obj = _objects[target["handle"]]
    elif "code" in target:
        obj = _materialise(wire.Code(target["code"], target.get("env", {})))
    else:
        name = target.get("global")
        if not isinstance(name, str) or name not in ns:
            raise NameError(f"name {name!r} is not defined in your notebook (did you rename it or skip its cell?)")
        obj = ns[name]
    for attr in target["path"]:
        obj = getattr(obj, attr)
    return obj


def _materialise(v: Any) -> Any:
    import math

    import torch

    if isinstance(v, wire.Handle):
        return _objects[v.id]
    if isinstance(v, wire.Code):
        return eval(v.source, {"torch": torch, "math": math, **{k: _materialise(x) for k, x in v.env.items()}})  # noqa: S307 - the grader's own test function, not student input
    if isinstance(v, wire.Generator):
        g = torch.Generator()
        g.set_state(v.state)
        return g
    if isinstance(v, list):
        return [_materialise(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_materialise(x) for x in v)
    if isinstance(v, dict):
        return {k: _materialise(x) for k, x in v.items()}
    return v


def serve(requests: str, answers: str, n: int) -> None:
    """Answer request ``n`` of the grader: read ``requests/n.in`` (a folder the box can only read), write
    ``answers/n.out``."""
    folder = Path(answers)
    try:
        request = wire.loads((Path(requests) / f"{n}.in").read_bytes())
        op, target = request["op"], request["target"]
        obj = _resolve(target, _namespace())
        if op == "call":
            result = obj(*_materialise(request["args"]), **_materialise(request["kwargs"]))
        elif op == "get":
            result = obj
        elif op == "list":
            result = list(obj)
        elif op == "type":
            result = f"{type(obj).__module__}.{type(obj).__qualname__}"
        else:
            raise ValueError(f"unknown operation {op!r}")
        try:
            data = wire.dumps({"ok": result}, to_handle=_to_handle)
        except wire.WireError as err:
            data = wire.dumps({"error": ["WireError", str(err)]})
    except BaseException as err:  # noqa: BLE001 - every failure of the student's code goes back as a message
        data = wire.dumps({"error": [type(err).__name__, str(err)[:2000]]})
    tmp = folder / f"{n}.out.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, folder / f"{n}.out")


# ----------------------------------------------------------------------------------------------------------------
# grader side
# ----------------------------------------------------------------------------------------------------------------
class StudentError(Exception):
    """The student's code raised ``type_name: message`` in the kernel."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message!r}")
        self.student_error_type = type_name
        self.student_error_message = message


class RpcFailure(Exception):
    """The kernel gave no usable answer (it died, hung, or wrote something that is not a valid message)."""


class RemoteRef:
    """A name (or an attribute path under it) in the student's kernel; calling it calls the student's object."""

    def __init__(self, channel: Callable[[dict], Any], target: dict):
        self._channel, self._target = channel, target

    def __getattr__(self, attr: str) -> "RemoteRef":
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return RemoteRef(self._channel, {**self._target, "path": [*self._target["path"], attr]})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel({"op": "call", "target": self._target, "args": args, "kwargs": kwargs})

    def __getitem__(self, key: Any) -> Any:
        return RemoteRef(self._channel, {**self._target, "path": [*self._target["path"], "__getitem__"]})(key)

    def __len__(self) -> int:
        n = RemoteRef(self._channel, {**self._target, "path": [*self._target["path"], "__len__"]})()
        if not isinstance(n, int):
            raise StudentError("TypeError", "__len__ did not return an int")
        return n

    def __iter__(self):
        return iter(self._channel({"op": "list", "target": self._target}))

    def __repr__(self) -> str:
        return f"<student's {self._describe()}>"

    def _describe(self) -> str:
        t = self._target
        head = t.get("global") or f"object {t.get('handle')}"
        return ".".join([head, *t["path"]])


class RemoteCode(RemoteRef):
    """A small function of the grader's (``"lambda x: x @ A.T"``) that the kernel builds: pass it to the student's
    functions, or call it to run it in the kernel."""

    def __init__(self, channel: Callable[[dict], Any], source: str, env: dict):
        super().__init__(channel, {"code": source, "env": env, "path": []})
        self.code = wire.Code(source, env)


class RemoteObject(RemoteRef):
    """An object that stayed in the kernel (a model, a generator); ``type_name`` is what the kernel says it is."""

    def __init__(self, channel: Callable[[dict], Any], handle: wire.Handle):
        super().__init__(channel, {"handle": handle.id, "path": []})
        self.handle, self.type_name = handle, handle.type


class Remote:
    """The student's notebook as the grader sees it: ``student.name`` is the name in the kernel's namespace.

    ``send(request) -> reply`` carries one request to the kernel and back (the grader's channel); values are decoded
    with the wire format, handles become :class:`RemoteObject`, and the student's exceptions :class:`StudentError`
    (or ``NotImplementedError`` for a stub)."""

    def __init__(self, send: Callable[[dict], Any]):
        self._send = send

    def _request(self, request: dict) -> Any:
        request = {**request}
        if "args" in request:
            request["args"] = [self._plain(a) for a in request["args"]]
            request["kwargs"] = {k: self._plain(v) for k, v in request["kwargs"].items()}
        reply = self._send(request)
        if not isinstance(reply, dict) or len(reply) != 1:
            raise RpcFailure("the kernel's reply is malformed")
        if "error" in reply:
            err = reply["error"]
            if not (isinstance(err, list) and len(err) == 2 and all(isinstance(e, str) for e in err)):
                raise RpcFailure("the kernel's error reply is malformed")
            if err[0] == "NotImplementedError":
                raise NotImplementedError(err[1][:300])
            # both strings are the student's: an identifier for the type, the message cut short (the instructor reads
            # them in the CSV, where they must not pass for the grader's words)
            raise StudentError(re.sub(r"[^\w.]", "?", err[0])[:60] or "?", err[1][:300])
        if "ok" not in reply:
            raise RpcFailure("the kernel's reply is malformed")
        return self._wrap(reply["ok"])

    def _plain(self, v: Any) -> Any:
        if isinstance(v, RemoteObject):
            return v.handle
        if isinstance(v, RemoteCode):
            return v.code
        if isinstance(v, RemoteRef):
            got = self._request({"op": "get", "target": v._target})
            return got.handle if isinstance(got, RemoteObject) else got
        if isinstance(v, (list, tuple)):
            return type(v)(self._plain(x) for x in v)
        if isinstance(v, dict):
            return {k: self._plain(x) for k, x in v.items()}
        return v

    def _wrap(self, v: Any) -> Any:
        if isinstance(v, wire.Handle):
            return RemoteObject(self._request, v)
        if isinstance(v, list):
            return [self._wrap(x) for x in v]
        if isinstance(v, tuple):
            return tuple(self._wrap(x) for x in v)
        if isinstance(v, dict):
            return {k: self._wrap(x) for k, x in v.items()}
        return v

    def __getattr__(self, name: str) -> RemoteRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return RemoteRef(self._request, {"global": name, "path": []})

    # the same helpers as checks.LocalStudent, so one hidden test runs in both places
    def value(self, ref: Any) -> Any:
        """The value behind a reference (an attribute of a student's object, a global): data, or a handle."""
        if isinstance(ref, RemoteObject):
            return ref
        if isinstance(ref, RemoteRef):
            return self._request({"op": "get", "target": ref._target})
        return ref

    def type_name(self, ref: Any) -> str:
        """``module.QualName`` of a student's object, as the kernel reports it."""
        if isinstance(ref, RemoteRef):
            return str(self._request({"op": "type", "target": ref._target}))
        return f"{type(ref).__module__}.{type(ref).__qualname__}"

    def code(self, source: str, **env: Any) -> RemoteCode:
        """A small function (``"lambda x: x @ A.T"``) that the kernel builds, with data ``env`` bound: pass it to the
        student's functions (a test vector field, a critic), or call it (it runs in the kernel)."""
        return RemoteCode(self._request, source, env)
