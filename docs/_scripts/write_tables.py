"""Write the reference tables that must not drift from the code.

    python docs/_scripts/write_tables.py

writes

* ``docs/_generated/transitions.inc``: for each role, which frame a side may
  send in which state and the state it moves to, read from
  ``adieu._state.TRANSITIONS`` and ``GUARDS`` (included by the wire protocol
  specification);
* ``docs/_generated/defaults.inc``: every public default, its value, its
  reason (the ``#:`` comment above its definition in the source) and the
  parameters that use it (found in the source's signatures).

``tests/test_docs.py`` regenerates both and fails while a checked-in file is
stale.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent
SRC = DOCS.parent / "src"
sys.path.insert(0, str(SRC))

import adieu  # noqa: E402
import adieu.testing  # noqa: E402
from adieu._state import GUARDS, TRANSITIONS, FrameKind, Role  # noqa: E402

#: The public defaults: the name in ``adieu`` -> (module, name there).
DEFAULTS = {
    "DEFAULT_GRACE_PERIOD": ("_connection", "DEFAULT_GRACE_PERIOD"),
    "DEFAULT_MAX_MESSAGE_SIZE": ("_frames", "DEFAULT_MAX_MESSAGE_SIZE"),
    "DEFAULT_RECEIVE_BUFFER_SIZE": ("_connection", "DEFAULT_RECEIVE_BUFFER_SIZE"),
    "DEFAULT_MAX_CONNECTIONS": ("_options", "DEFAULT_MAX_CONNECTIONS"),
    "DEFAULT_HANDSHAKE_TIMEOUT": ("_options", "DEFAULT_HANDSHAKE_TIMEOUT"),
    "DEFAULT_LINGER": ("_transport", "DEFAULT_LINGER"),
    "PROTOCOL_VERSION": ("_frames", "VERSION"),
}

#: Defaults that are not exported constants: (where, module, name).
OTHER_DEFAULTS = (
    ("the SHUTDOWN reason of Server.shutdown()", "_server", "DEFAULT_SHUTDOWN_REASON"),
    ("the longest SHUTDOWN reason, in bytes of UTF-8", "_frames", "MAX_REASON_BYTES"),
    (
        "adieu.testing pipes: bytes in flight each way",
        "testing",
        "DEFAULT_PIPE_CAPACITY",
    ),
)


# ------------------------------------------------------------------ the rules


def transitions() -> bytes:
    kinds = list(FrameKind)
    out: list[str] = []
    for role in Role:
        out += [
            f".. list-table:: What a {role.value}'s side may send",
            "   :header-rows: 1",
            "   :stub-columns: 1",
            "",
            "   * - state",
        ]
        out += [f"     - {kind.name}" for kind in kinds]
        for state, moves in TRANSITIONS[role].items():
            out.append(f"   * - ``{state.name}``")
            for kind in kinds:
                target = moves.get(kind)
                if target is None:
                    out.append("     - (protocol error)")
                    continue
                cell = f"→ ``{target.name}``"
                guard = GUARDS.get((role, kind))
                if guard is not None:
                    other, need = guard
                    cell += f", only once the {other.value} is ``{need.name}``"
                out.append(f"     - {cell}")
        out.append("")
    return "\n".join(out).encode("utf-8")


# ---------------------------------------------------------------- the defaults


def _comment_above(module: str, name: str) -> str:
    """The ``#:`` comment lines right above ``name``'s assignment."""
    path = SRC / "adieu" / f"{module}.py"
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            comment: list[str] = []
            i = node.lineno - 2
            while i >= 0 and lines[i].lstrip().startswith("#:"):
                comment.insert(0, lines[i].lstrip()[2:].strip())
                i -= 1
            if not comment:
                raise RuntimeError(f"{module}.{name} has no #: comment")
            return " ".join(comment)
    raise RuntimeError(f"{module}.{name} is not assigned in {path.name}")


def _public_path(module: str, qualname: str) -> str | None:
    """``adieu.X`` (or ``adieu.testing.X``) for a function or method defined
    in ``module``, or ``None`` if it is not public."""
    parts = qualname.split(".")
    if any(p.startswith("_") and p != "__init__" for p in parts):
        return None
    owner = adieu.testing if module == "testing" else adieu
    prefix = "adieu.testing" if module == "testing" else "adieu"
    if parts[0] not in owner.__all__:
        return None
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([prefix, *parts])


def _field_user(module: str, prefix: str, node: ast.AST, name: str) -> str | None:
    """A reference to a public options class's field (a class-level
    annotated assignment) defaulting to ``name``, or ``None``."""
    if not (
        prefix
        and isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(node.value, ast.Name)
        and node.value.id == name
    ):
        return None
    public = _public_path(module, prefix.rstrip("."))
    if public is None:
        return None
    return f":class:`~{public}` (``{node.target.id}``)"


def _users(name: str) -> list[str]:
    """``role`` references to every public parameter (or public options
    field) defaulting to ``name``."""
    found: list[str] = []
    for path in sorted((SRC / "adieu").glob("*.py")):
        module = path.stem
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack: list[tuple[ast.AST, str]] = [(node, "") for node in tree.body]
        while stack:
            node, prefix = stack.pop(0)
            if isinstance(node, ast.ClassDef):
                stack += [(child, f"{prefix}{node.name}.") for child in node.body]
                continue
            field = _field_user(module, prefix, node, name)
            if field is not None:
                found.append(field)
                continue
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            positional = args.posonlyargs + args.args
            with_defaults = positional[len(positional) - len(args.defaults) :]
            pairs = list(zip(with_defaults, args.defaults, strict=True))
            pairs += [
                (a, d)
                for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                if d is not None
            ]
            public = _public_path(module, prefix + node.name)
            if public is None:
                continue
            for arg, default in pairs:
                if isinstance(default, ast.Name) and default.id == name:
                    role = "class" if public.split(".")[-1][0].isupper() else "func"
                    found.append(f":{role}:`~{public}` (``{arg.arg}``)")
    return found


def _value(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024:
        for unit, shift in (("MiB", 20), ("KiB", 10)):
            if value % (1 << shift) == 0:
                return f"{value!r} ({value >> shift} {unit})"
    return repr(value)


def defaults() -> bytes:
    out: list[str] = []
    for public, (module, name) in DEFAULTS.items():
        value = getattr(adieu, public)
        out += [
            f".. py:data:: {public}",
            "   :module: adieu",
            f"   :value: {_value(value)}",
            "",
            f"   {_comment_above(module, name)}",
            "",
        ]
        users = _users(name)
        if users:
            out += ["   The default of: " + ", ".join(users) + ".", ""]
    out += [
        ".. list-table:: Other defaults",
        "   :header-rows: 1",
        "",
        "   * - what",
        "     - value",
        "     - why",
    ]
    for what, module, name in OTHER_DEFAULTS:
        owner = adieu.testing if module == "testing" else sys.modules[f"adieu.{module}"]
        out += [
            f"   * - {what}",
            f"     - ``{_value(getattr(owner, name))}``",
            f"     - {_comment_above(module, name)}",
        ]
    signatures = (
        ("adieu.connect_tcp", "happy_eyeballs_delay"),
        ("adieu.open_unix_server", "backlog"),
    )
    for function, parameter in signatures:
        target: Any = adieu
        for part in function.split(".")[1:]:
            target = getattr(target, part)
        default = inspect.signature(target).parameters[parameter].default
        out += [
            f"   * - :func:`{function}` ``{parameter}``",
            f"     - ``{default!r}``",
            f"     - {SIGNATURE_REASONS[(function, parameter)]}",
        ]
    out.append("")
    return "\n".join(out).encode("utf-8")


#: Reasons for signature defaults that have no named constant (the values
#: themselves are read from the signatures above).
SIGNATURE_REASONS = {
    ("adieu.connect_tcp", "happy_eyeballs_delay"): (
        "Trio's own default for :func:`trio.open_tcp_stream`: try the next "
        "address if the first has not connected within a quarter of a second."
    ),
    ("adieu.open_unix_server", "backlog"): (
        "A listen backlog of 128 is the traditional ``SOMAXCONN`` of Linux; "
        "connections past ``max_connections`` wait there."
    ),
}


def render() -> dict[str, bytes]:
    """The tables, as ``{path relative to docs/: bytes}``."""
    return {
        "_generated/transitions.inc": transitions(),
        "_generated/defaults.inc": defaults(),
    }


def main() -> None:
    for rel, data in render().items():
        (DOCS / rel).write_bytes(data)
        print(f"wrote docs/{rel}")


if __name__ == "__main__":
    main()
