"""An exhaustive interleaving checker for adieu's terminal handshake.

Two endpoints talk over a FIFO byte channel each way. The endpoints are the
real sans-I/O core, :class:`adieu.Protocol`, one per role; the checker only
plays the network and the two applications around them. From the state where
both preambles are on the wire it takes every action either side may take, in
every order, breadth first, and checks invariants in every state it reaches.

Actions
=======

* the client application sends a request (up to a bound), or its END;
* the server application answers a request it received (one reply per
  request, as long as it can still send), sends SHUTDOWN, or ends (its END:
  the model lets it *try* whenever every request is answered, and the core
  must refuse before the client's END has arrived);
* either side aborts (its transport resets: bytes in flight both ways are
  lost, the peer sees a reset; once its ending is decided, its END out, it
  closes without a reset instead, as ``Connection.abort`` does), and the
  server's grace period expires after SHUTDOWN (the server aborts,
  ``TIMED_OUT``);
* with ``closes=True``, either application closes in one step
  (``aclose``): END if its core allows it, FIN, then it waits only for the
  peer's EOF, discarding and counting what arrives; it may close a second
  time (a concurrent or repeated close, which must change nothing), and its
  linger may expire (a fair time-out: it releases its transport);
* the network delivers the next chunk of a channel: one byte of a frame, its
  header and one byte of payload, the rest of a frame, everything queued, or
  everything but its last byte, so that frames arrive split in all the ways
  the decoder distinguishes; then the transport's EOF or reset, in order.

A side releases its transport when its core says it may
(:attr:`adieu.Protocol.may_release`: the ending is decided, by both ENDs
exchanged and both FINs, by a recorded cause, or by the peer's EOF while it
closes in one step), after a truncation (the peer then sees EOF), after a protocol
error (the peer then sees a reset) and after an abort or a reset.

States are compared by their canonical content (both cores' fields, the
channels, the applications' records), so an ordering that leads to a state
seen before is not explored twice.

Invariants
==========

Checked in every reachable state (see :meth:`ConnectionModel.check`):

``lost reply``
    A client that ends ``CLEAN`` and discarded nothing got a reply to every
    request.
``lost message``
    Every message either side sent reached the other's application, or the
    sender's or the receiver's termination is not ``CLEAN``, or counts it as
    discarded.
``server CLEAN, END unheard``
    The server ends ``CLEAN`` only if the client received the server's END,
    unless the client's own report says it gave up (initiator ``LOCAL``, not
    ``CLEAN``: it aborted, or closed before the END came).
``unconfirmed``
    A client that ends ``CLEAN`` has ``confirmed`` set: the server's END
    counted every client message.
``server ended first``
    The server's END is never accepted by its core before the client's END
    has arrived (judged from the frames delivered, not from the core).
``core refused a legal send``, ``decoded as sent``, ``out of order``,
``unexpected protocol error``
    The core accepts what the rules allow, decodes every frame as it was
    encoded however it is split, keeps order, and reports no protocol error
    between two honest peers.
``no way to end``
    From every reachable state an end state (both sides released) is
    reachable without anyone aborting; the grace period's expiry counts, as
    a fair action.
``no clean end``
    From every state where nothing went wrong yet, both sides can still end
    ``CLEAN`` without any abort or timeout.

A third model replaces one endpoint by a *misbehaving peer* that writes raw
frames, legal ones and at most one that breaks a rule (a client's SHUTDOWN,
a message after END, a server's END before the client's, a wrong preamble,
an unknown frame type, ...):

``violation not reported``
    The honest side ends ``PROTOCOL_ERROR`` if that frame reached it whole
    before it released its transport, even after both ENDs were exchanged.
``false protocol error``
    It never ends so if no illegal frame reached it.
``events lost before an error``
    The frames that arrived before the bad one, in the same chunk, are still
    reported as events.

The symmetric variant
=====================

:class:`HalfCloseEndpoint` is *not* adieu's core: it is what an application
gets from plain TCP half-close, written over adieu's real frame encoding so
that the same checker can run it. Either side may send END whenever it
decides to stop, there is no SHUTDOWN, END carries no count, and a side that
receives END takes it as final. The real core cannot play this part: its
rules (``adieu._state.GUARDS``) refuse a server's END before the client's.
The checker finds the loss this library exists to prevent
(:func:`symmetric_counterexample`).
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import adieu
from adieu import (
    ConnectionTruncated,
    End,
    Initiator,
    LocalProtocolError,
    Message,
    ProtocolError,
    Role,
    ShutdownRequest,
    Termination,
    TerminationKind,
)
from adieu._frames import (
    DEFAULT_MAX_MESSAGE_SIZE,
    END,
    FRAME_HEADER,
    MESSAGE,
    SHUTDOWN,
    FrameDecoder,
    encode_end,
    encode_message_header,
    encode_preamble,
    encode_shutdown,
)

#: One step of a trace: (actor, action, detail), e.g.
#: ``("client", "sends request #1", "in flight")``.
Step = tuple[str, str, str]

GRACE_PERIOD = 10.0
REASON = "maintenance"

# How a transition is taken into account by the liveness checks.
PROGRESS = "progress"  # what cooperating peers and the network do
TIMEOUT = "timeout"  # the server's grace period expires (a fair action)
ABORT = "abort"  # a side gives up on its own


# ---------------------------------------------------------------- copying


_ATOMIC = (int, float, str, bytes, type(None), enum.Enum, tuple, frozenset)
# type -> whether its instances are immutable (tuples count: the core keeps
# only immutable items in them).
_immutable_types: dict[type, bool] = {}


def plural(n: int, noun: str) -> str:
    """``1 request``, ``2 requests``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _is_immutable_type(cls: type) -> bool:
    known = _immutable_types.get(cls)
    if known is None:
        params = getattr(cls, "__dataclass_params__", None)
        known = issubclass(cls, _ATOMIC) or (params is not None and params.frozen)
        _immutable_types[cls] = known
    return known


def clone(obj: Any) -> Any:
    """A copy of ``obj`` (a core object) sharing only its immutable parts.

    Much faster than :func:`copy.deepcopy`. It copies lists, dicts and sets
    one level deep (their items are bytes and enums) and nested objects
    recursively, and refuses any attribute it does not understand, so that a
    new field in the core cannot silently end up shared between states.
    """
    new = object.__new__(type(obj))
    attrs = new.__dict__
    attrs.update(obj.__dict__)
    for name, value in attrs.items():
        cls = type(value)
        if _immutable_types.get(cls) or _is_immutable_type(cls):
            continue
        if cls in (list, dict, set, bytearray):
            attrs[name] = value.copy()
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            attrs[name] = clone(value)
        else:
            raise TypeError(
                f"cannot copy {type(obj).__name__}.{name} of type {cls.__name__}"
            )
    return new


def freeze(value: Any) -> Hashable:
    """A hashable, canonical form of a core object: every field, recursively."""
    cls = type(value)
    if cls is tuple or cls is list:
        return tuple([freeze(v) for v in value])
    if _immutable_types.get(cls) or _is_immutable_type(cls):
        return value  # type: ignore[no-any-return]
    if cls is dict:
        return tuple([(k, freeze(v)) for k, v in value.items()])
    if cls is set:
        return frozenset(value)
    if cls is bytearray:
        return bytes(value)
    out: list[Hashable] = [cls.__name__]
    for v in vars(value).values():
        vcls = type(v)
        if vcls is not tuple and _immutable_types.get(vcls):
            out.append(v)
        else:
            out.append(freeze(v))
    return tuple(out)


# ---------------------------------------------------------------- channels


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame on the wire, as the sender wrote it.

    Attributes:
        kind: ``"preamble"``, ``"message"``, ``"end"``, ``"shutdown"`` or
            ``"junk"`` (a frame no rule allows).
        label: how a trace names it (``"request #2"``).
        data: its bytes.
        expect: the event the receiver's core must report for it, if any.
        breaks: the rule this frame breaks, for a misbehaving peer's frames.
        ends_first: a server's END sent before the client's END arrived; it
            breaks the rules if the client has not sent END when it reads it.
    """

    kind: str
    label: str
    data: bytes
    expect: object = None
    breaks: str | None = None
    ends_first: bool = False


EOF = "EOF"  # the transport's end of file (after the sender's last byte)
RST = "RST"  # the transport was reset: the receiver sees a reset at once

Item = Frame | str


@dataclasses.dataclass(frozen=True)
class Channel:
    """A FIFO byte stream in one direction.

    Attributes:
        items: frames not yet delivered whole, then possibly EOF or RST.
        pos: bytes of the first frame already delivered.
        dead: the receiver released its transport: what is written vanishes.
    """

    items: tuple[Item, ...] = ()
    pos: int = 0
    dead: bool = False

    def write(self, *items: Item) -> Channel:
        if self.dead:
            return self
        if self.items and not isinstance(self.items[-1], Frame):
            raise AssertionError(f"write after {self.items[-1]}")
        return dataclasses.replace(self, items=self.items + items)

    def eof(self) -> Channel:
        """The sender half-closes (FIN), unless it already did."""
        if self.dead or (self.items and not isinstance(self.items[-1], Frame)):
            return self
        return dataclasses.replace(self, items=(*self.items, EOF))

    def frames(self) -> list[Frame]:
        """The frames queued before any EOF or RST."""
        out = []
        for item in self.items:
            if not isinstance(item, Frame):
                break
            out.append(item)
        return out

    def chunk_sizes(self, fine: bool) -> list[int]:
        """The chunk sizes the network may deliver next (see the module
        docstring); empty if the head of the channel is EOF or RST."""
        frames = self.frames()
        if not frames:
            return []
        rest = len(frames[0].data) - self.pos
        sizes = {rest}
        total = self.pos * -1 + sum(len(f.data) for f in frames)
        sizes.add(total)
        if fine:
            if self.pos == 0 and rest > 1:
                sizes.add(1)
            if self.pos == 0 and rest > FRAME_HEADER + 1:
                sizes.add(FRAME_HEADER + 1)
            if total - 1 > rest:
                sizes.add(total - 1)
        return sorted(sizes)

    def take(self, size: int) -> tuple[bytes, list[Frame], Frame | None, Channel]:
        """Deliver ``size`` bytes: ``(bytes, frames completed, frame left
        partly delivered, the channel after)``."""
        chunks: list[bytes] = []
        done: list[Frame] = []
        items = list(self.items)
        pos = self.pos
        while size:
            head = items[0]
            assert isinstance(head, Frame)
            take = min(size, len(head.data) - pos)
            chunks.append(head.data[pos : pos + take])
            size -= take
            pos += take
            if pos == len(head.data):
                done.append(head)
                items.pop(0)
                pos = 0
        partial = items[0] if pos else None
        assert partial is None or isinstance(partial, Frame)
        after = Channel(tuple(items), pos, self.dead)
        return b"".join(chunks), done, partial, after

    def pop_marker(self) -> tuple[str, Channel]:
        head = self.items[0]
        assert isinstance(head, str)
        return head, dataclasses.replace(self, items=self.items[1:])


# ------------------------------------------------------- the symmetric variant


class HalfCloseEndpoint:
    """Plain TCP half-close semantics over adieu's frame encoding.

    Not adieu's core, on purpose: this is the symmetric termination the
    library replaces, kept here so the checker can show what goes wrong
    with it. Either side may send END whenever it decides to stop (a FIN);
    there is no SHUTDOWN; END carries no count (a FIN acknowledges nothing
    at the application's level); receiving END after sending one, then the
    transport's EOF, is a clean end. The frames are adieu's real encoding
    and are decoded by adieu's real :class:`~adieu._frames.FrameDecoder`.

    It offers the part of :class:`adieu.Protocol`'s interface the model uses.
    """

    def __init__(self, role: Role) -> None:
        self.role = role
        self._decoder = FrameDecoder(role.peer, DEFAULT_MAX_MESSAGE_SIZE)
        self._sent = 0
        self._received = 0
        self._end_sent = False
        self._end_received = False
        self._eof = False
        self._cause: tuple[TerminationKind, adieu.Initiator, str] | None = None
        self._termination: Termination | None = None

    @property
    def termination(self) -> Termination | None:
        return self._termination

    @property
    def cause(self) -> TerminationKind | None:
        return None if self._cause is None else self._cause[0]

    @property
    def finished(self) -> bool:
        return self._end_sent and self._end_received

    @property
    def eof_received(self) -> bool:
        return self._eof

    @property
    def settled(self) -> bool:
        return self.finished

    @property
    def may_release(self) -> bool:
        return self.finished and self._eof

    @property
    def messages_sent(self) -> int:
        return self._sent

    def end_written(self) -> None:
        """(Its END and FIN are one step.)"""

    def eof_sent(self) -> None:
        """(Likewise.)"""

    def preamble(self) -> bytes:
        return encode_preamble(self.role)

    def send_message(self, data: bytes) -> bytes:
        if self._end_sent or self._cause is not None:
            raise LocalProtocolError("cannot send after END")
        self._sent += 1
        return encode_message_header(len(data)) + data

    def send_end(self) -> bytes:
        if self._end_sent or self._cause is not None:
            raise LocalProtocolError("END was already sent")
        self._end_sent = True
        return encode_end(None)

    def receive_data(self, data: bytes) -> list[object]:
        if self._cause is not None:
            return []
        events: list[object] = []
        try:
            items = self._decoder.feed(data)
        except ProtocolError as exc:
            raise self._fail(exc, events)  # noqa: B904 (the same exception)
        for ftype, _payload in items:
            if ftype == FrameDecoder.PREAMBLE_ITEM:
                continue
            if self._end_received or ftype not in (MESSAGE, END):
                raise self._fail(ProtocolError("frame after END"), events)
            if ftype == MESSAGE:
                self._received += 1
                events.append(Message(_payload))
            else:
                self._end_received = True
                events.append(End(None))
        return events

    def _fail(self, exc: ProtocolError, events: list[object]) -> ProtocolError:
        self._record(TerminationKind.PROTOCOL_ERROR, adieu.Initiator.PEER, str(exc))
        exc.events = tuple(events)
        return exc

    def receive_eof(self) -> None:
        self._eof = True
        if self._cause is None and not self._end_received:
            self._record(TerminationKind.TRUNCATED, adieu.Initiator.PEER, "EOF")
            raise ConnectionTruncated("the transport ended without END")

    def connection_reset(self) -> None:
        self._record(TerminationKind.RESET, adieu.Initiator.PEER, "reset")

    def abort(self, *, timed_out: bool = False) -> None:
        kind = TerminationKind.TIMED_OUT if timed_out else TerminationKind.ABORTED
        self._record(kind, adieu.Initiator.LOCAL, "aborted")

    def _record(self, kind: TerminationKind, who: adieu.Initiator, detail: str) -> None:
        if self._cause is None and not self.finished:
            self._cause = (kind, who, detail)

    def close(self) -> Termination:
        if self._termination is None:
            if self._cause is not None:
                kind, who, detail = self._cause
            elif self.finished:
                kind, who, detail = (
                    TerminationKind.CLEAN,
                    adieu.Initiator.LOCAL,
                    "both ENDs exchanged",
                )
            else:
                kind, who, detail = (
                    TerminationKind.TRUNCATED,
                    adieu.Initiator.LOCAL,
                    "closed early",
                )
            self._termination = Termination(
                kind=kind,
                initiator=who,
                messages_sent=self._sent,
                messages_received=self._received,
                messages_discarded=0,
                confirmed=None,
                acknowledged=None,
                detail=detail,
            )
        return self._termination


# ---------------------------------------------------------------- the model


def _end_and_fin_written(side: Any) -> None:
    """The model writes a side's END and its FIN in one step: tell its core
    both, as the Connection does once the END's write returns."""
    side.end_written()
    side.eof_sent()


@dataclasses.dataclass(frozen=True)
class ClientApp:
    """What the client's application did and saw."""

    sent: int = 0
    received: tuple[bytes, ...] = ()
    shutdown_seen: bool = False
    ended: bool = False
    got_end: bool = False
    closing: bool = False
    closes: int = 0

    def replies(self) -> list[int]:
        return [int(m[1:]) for m in self.received if m[:1] == b"r"]


@dataclasses.dataclass(frozen=True)
class ServerApp:
    """What the server's application did and saw.

    Attributes:
        end_delivered: the client's END frame arrived whole (read off the
            channel, independently of the core).
        late: requests that arrived after this server sent END.
    """

    requests: tuple[int, ...] = ()
    answered: int = 0
    end_delivered: bool = False
    got_end: bool = False
    shutdown_sent: bool = False
    ended: bool = False
    late: tuple[int, ...] = ()
    closing: bool = False
    closes: int = 0


@dataclasses.dataclass(frozen=True)
class RawPeer:
    """A misbehaving peer that writes raw frames.

    Attributes:
        broke: the rule of the one illegal frame it sent, if any.
        peer_end: the honest client's END reached it (raw server).
        received: messages it received from the honest side.
        gone: it was reset.
    """

    preamble: bool = False
    messages: int = 0
    shutdown: bool = False
    ended: bool = False
    broke: str | None = None
    eof: bool = False
    peer_end: bool = False
    received: int = 0
    gone: bool = False


class State:
    """One state of the model: both endpoints, both channels, both
    applications (or the misbehaving peer), and what the transition that
    led here noticed (``notes``).

    States share endpoint objects until a transition changes one
    (:meth:`mutable` copies it first), so that an endpoint's canonical form
    is computed once and unchanged endpoints cost nothing to copy.
    """

    __slots__ = (
        "c2s",
        "capp",
        "ckey",
        "client",
        "notes",
        "owned",
        "raw",
        "s2c",
        "sapp",
        "seen",
        "server",
        "skey",
    )

    client: Any
    server: Any
    ckey: Hashable
    skey: Hashable
    c2s: Channel
    s2c: Channel
    capp: ClientApp
    sapp: ServerApp
    raw: RawPeer | None
    seen: int  # a misbehaving peer's illegal frame: 0 unseen, 1 partly, 2 whole
    notes: tuple[tuple[str, str], ...]
    owned: set[Role]  # endpoints this state copied (may change in place)

    def copy(self) -> State:
        new = object.__new__(State)
        new.client, new.server = self.client, self.server
        new.ckey, new.skey = self.ckey, self.skey
        new.c2s, new.s2c = self.c2s, self.s2c
        new.capp, new.sapp, new.raw = self.capp, self.sapp, self.raw
        new.seen = self.seen
        new.notes = ()
        new.owned = set()
        return new

    def mutable(self, role: Role) -> Any:
        """``role``'s endpoint, copied so that this state may change it."""
        if role in self.owned:
            return self.side(role)
        self.owned.add(role)
        if role is Role.CLIENT:
            self.client = clone(self.client)
            self.ckey = None
            return self.client
        self.server = clone(self.server)
        self.skey = None
        return self.server

    def key(self) -> Hashable:
        if self.ckey is None and self.client is not None:
            self.ckey = freeze(self.client)
        if self.skey is None and self.server is not None:
            self.skey = freeze(self.server)
        return (
            self.ckey,
            self.skey,
            self.c2s,
            self.s2c,
            self.capp,
            self.sapp,
            self.raw,
            self.seen,
            self.notes,
        )

    def side(self, role: Role) -> Any:
        return self.client if role is Role.CLIENT else self.server

    def outbound(self, role: Role) -> Channel:
        return self.c2s if role is Role.CLIENT else self.s2c

    def set_outbound(self, role: Role, channel: Channel) -> None:
        if role is Role.CLIENT:
            self.c2s = channel
        else:
            self.s2c = channel

    def note(self, invariant: str, text: str) -> None:
        self.notes = (*self.notes, (invariant, text))


def _open(side: Any) -> bool:
    return side is not None and side.termination is None


_U32 = struct.Struct(">I")


class ConnectionModel:
    """The two endpoints, their channels and applications, as a graph of
    states for :func:`explore`.

    Args:
        requests: how many requests the client sends at most (each gets one
            reply, so as many messages flow each way).
        symmetric: use :class:`HalfCloseEndpoint` on both sides instead of
            the real core, with TCP half-close behaviour.
        aborts: let either side abort at any moment.
        misbehaving: replace the endpoint of this role by a peer writing raw
            frames (:class:`RawPeer`), at most one of which breaks a rule.
        fine_chunks: deliver frames split at every point the decoder
            distinguishes (otherwise only whole frames and everything queued).
        closes: let either application also close in one step (``aclose``),
            twice (a concurrent or repeated close), with a linger that may
            expire.
    """

    def __init__(
        self,
        *,
        requests: int = 3,
        symmetric: bool = False,
        aborts: bool = True,
        misbehaving: Role | None = None,
        fine_chunks: bool = True,
        closes: bool = False,
    ) -> None:
        self.requests = requests
        self.symmetric = symmetric
        self.aborts = aborts
        self.misbehaving = misbehaving
        self.fine_chunks = fine_chunks
        self.closes = closes and not symmetric
        self.liveness = misbehaving is None

    def __str__(self) -> str:
        name = "symmetric half-close" if self.symmetric else "adieu core"
        if self.misbehaving is not None:
            name += f", misbehaving {self.misbehaving.value}"
        text = f"{name}, {self.requests} requests, aborts={self.aborts}"
        return text + (", closes" if self.closes else "")

    def _endpoint(self, role: Role) -> Any:
        if self.symmetric:
            return HalfCloseEndpoint(role)
        return adieu.Protocol(role)

    # ------------------------------------------------------------ the graph

    def initial(self) -> State:
        s = object.__new__(State)
        s.client = s.server = s.ckey = s.skey = None
        s.c2s = s.s2c = Channel()
        for role in Role:
            if role is self.misbehaving:
                continue
            side = self._endpoint(role)
            frame = Frame("preamble", "preamble", side.preamble())
            if role is Role.CLIENT:
                s.client, s.c2s = side, Channel((frame,))
            else:
                s.server, s.s2c = side, Channel((frame,))
        s.capp, s.sapp = ClientApp(), ServerApp()
        s.raw = None if self.misbehaving is None else RawPeer()
        s.seen = 0
        s.notes = ()
        s.owned = set()
        return s

    def key(self, s: State) -> Hashable:
        return s.key()

    def is_end(self, s: State) -> bool:
        if self.misbehaving is not None:
            return not _open(s.side(self.misbehaving.peer))
        return not _open(s.client) and not _open(s.server)

    def is_clean_end(self, s: State) -> bool:
        return self.is_end(s) and all(
            side.termination.clean for side in (s.client, s.server)
        )

    def undisturbed(self, s: State) -> bool:
        """Nothing went wrong yet: no abort, no timeout, no reset, and no
        side closing in one step (which gives up waiting for the peer)."""
        if s.capp.closing or s.sapp.closing:
            return False
        for side in (s.client, s.server):
            if side.cause is not None:
                return False
            if side.termination is not None and not side.termination.clean:
                return False
        return RST not in s.c2s.items and RST not in s.s2c.items

    def successors(self, s: State) -> Iterator[tuple[Step, State, str]]:
        if self.is_end(s):
            return
        if self.misbehaving is not Role.CLIENT and _open(s.client):
            yield from self._client_actions(s)
        if self.misbehaving is not Role.SERVER and _open(s.server):
            yield from self._server_actions(s)
        if s.raw is not None and not s.raw.gone:
            yield from self._raw_actions(s)
        # The server's deliveries come first, so that among traces of equal
        # length the shortest one found tells the server's side first.
        for role in (Role.SERVER, Role.CLIENT):
            yield from self._deliveries(s, role)

    # ------------------------------------------------------ the applications

    def _client_actions(self, s: State) -> Iterator[tuple[Step, State, str]]:
        app = s.capp
        if (
            app.sent < self.requests
            and not app.ended
            and not (self.symmetric and app.got_end)
        ):
            t = s.copy()
            k = app.sent + 1
            data = b"q%d" % k
            try:
                frame = t.mutable(Role.CLIENT).send_message(data)
            except LocalProtocolError as exc:
                t.note("core refused a legal send", f"request #{k}: {exc}")
            else:
                t.c2s = t.c2s.write(
                    Frame("message", f"request #{k}", frame, Message(data))
                )
            t.capp = dataclasses.replace(app, sent=k)
            yield ("client", f"sends request #{k}", "in flight"), t, PROGRESS
        if not app.ended:
            t = s.copy()
            detail = "then FIN: it will send nothing more"
            try:
                frame = t.mutable(Role.CLIENT).send_end()
            except LocalProtocolError as exc:
                t.note("core refused a legal send", f"client END: {exc}")
            else:
                _end_and_fin_written(t.mutable(Role.CLIENT))
                t.c2s = t.c2s.write(Frame("end", "END", frame, End(None))).eof()
                if app.got_end:
                    detail = "it took the server's END as final"
            t.capp = dataclasses.replace(app, ended=True)
            self._settle(t)
            yield ("client", "sends END", detail), t, PROGRESS
        if self.closes:
            yield from self._close_now(s, Role.CLIENT)
        if self.aborts:
            yield self._abort(s, Role.CLIENT, timed_out=False)

    def _server_actions(self, s: State) -> Iterator[tuple[Step, State, str]]:
        app = s.sapp
        if app.answered < len(app.requests) and not app.ended and not app.closing:
            t = s.copy()
            k = app.requests[app.answered]
            data = b"r%d" % k
            try:
                frame = t.mutable(Role.SERVER).send_message(data)
            except LocalProtocolError as exc:
                t.note("core refused a legal send", f"reply #{k}: {exc}")
            else:
                t.s2c = t.s2c.write(
                    Frame("message", f"reply #{k}", frame, Message(data))
                )
            t.sapp = dataclasses.replace(app, answered=app.answered + 1)
            yield ("server", f"sends reply #{k}", f"answers request #{k}"), t, PROGRESS
        if (
            not self.symmetric
            and not app.shutdown_sent
            and not app.ended
            and not app.end_delivered
        ):
            t = s.copy()
            try:
                frame = t.mutable(Role.SERVER).send_shutdown(GRACE_PERIOD, REASON)
            except LocalProtocolError as exc:
                t.note("core refused a legal send", f"SHUTDOWN: {exc}")
            else:
                expect = ShutdownRequest(GRACE_PERIOD, REASON)
                t.s2c = t.s2c.write(Frame("shutdown", "SHUTDOWN", frame, expect))
            t.sapp = dataclasses.replace(app, shutdown_sent=True)
            yield ("server", "sends SHUTDOWN", "asks the client to finish"), t, PROGRESS
        if not app.ended and (self.symmetric or app.answered == len(app.requests)):
            t = s.copy()
            try:
                frame = t.mutable(Role.SERVER).send_end()
            except LocalProtocolError:
                if app.end_delivered:
                    t.note(
                        "core refused a legal send",
                        "server END after the client's END",
                    )
                    yield ("server", "tries to send END", "refused"), t, PROGRESS
                # Otherwise the core rightly refused: no transition. (The
                # real connection asks with SHUTDOWN and waits, an action
                # of its own above.)
            else:
                first = not app.end_delivered
                if first:
                    t.note(
                        "server ended first",
                        "the server's END was accepted before the client's END arrived",
                    )
                count = None if self.symmetric else len(app.requests)
                _end_and_fin_written(t.mutable(Role.SERVER))
                t.s2c = t.s2c.write(
                    Frame("end", "END", frame, End(count), ends_first=first)
                ).eof()
                t.sapp = dataclasses.replace(app, ended=True)
                self._settle(t)
                detail = (
                    "ends first: it will send no more messages"
                    if first
                    else f"counts {plural(len(app.requests), 'request')}; then FIN"
                )
                yield ("server", "sends END", detail), t, PROGRESS
        if not self.symmetric and app.shutdown_sent:
            yield self._abort(s, Role.SERVER, timed_out=True)
        if self.closes and app.answered == len(app.requests):
            # (The server's application answers every request it took, as
            # everywhere in this model; what arrives later is discarded.)
            yield from self._close_now(s, Role.SERVER)
        if self.aborts:
            yield self._abort(s, Role.SERVER, timed_out=False)

    def _close_now(self, s: State, role: Role) -> Iterator[tuple[Step, State, str]]:
        """``role``'s application closes in one step (``aclose``): its END
        if it may send one, then its FIN; then it only waits, for a bounded
        linger, for the peer's EOF. A second call (a concurrent or repeated
        close) must change nothing but the count of calls; the linger's
        expiry is a fair time-out."""
        app = s.capp if role is Role.CLIENT else s.sapp
        if app.closes >= 2:
            return
        t = s.copy()
        side = t.mutable(role)
        side.begin_close(now=True)
        detail = "again: nothing changes" if app.closing else "then lingers for EOF"
        if not app.closing:
            out = t.outbound(role)
            if side.may_send_end:
                frame = side.send_end()
                side.end_written()
                count = None if role is Role.CLIENT else len(t.sapp.requests)
                out = out.write(Frame("end", "END", frame, End(count)))
                detail = "END, " + detail
            if not side.eof_out:  # the model writes END and FIN together
                side.eof_sent()
                out = out.eof()
            t.set_outbound(role, out)
        new = dataclasses.replace(app, closing=True, ended=True, closes=app.closes + 1)
        if role is Role.CLIENT:
            t.capp = new  # type: ignore[assignment]
        else:
            t.sapp = new  # type: ignore[assignment]
        self._settle(t)
        yield (role.value, "closes now", detail), t, PROGRESS
        if app.closing and _open(s.side(role)):
            t = s.copy()
            self._release(t, role, outbound=None)
            kind = t.side(role).termination.kind.name
            yield (role.value, "linger expires", f"closes: {kind}"), t, TIMEOUT

    def _abort(
        self, s: State, role: Role, *, timed_out: bool
    ) -> tuple[Step, State, str]:
        t = s.copy()
        side = t.mutable(role)
        quiet = self._quiet_abort(side)
        side.abort(timed_out=timed_out)
        # Once the ending is decided (our END is out), nothing can be lost:
        # the connection closes without a reset, as Connection.abort does.
        self._release(t, role, outbound=None if quiet else RST)
        kind = side.termination.kind.name
        if timed_out:
            step = (role.value, "grace period expires", f"aborts: {kind}")
            return step, t, TIMEOUT
        return (
            (role.value, "aborts", f"reset; bytes in flight are lost: {kind}"),
            t,
            ABORT,
        )

    def _quiet_abort(self, side: Any) -> bool:
        """Whether an abort closes without a reset: once the core says the
        ending is settled (both ENDs exchanged, ours written), as
        ``Connection.abort`` does."""
        return not self.symmetric and bool(side.settled)

    def _release(self, t: State, role: Role, *, outbound: str | None) -> None:
        """``role``'s side releases its transport: its input vanishes; its
        peer then sees EOF (``outbound=EOF``), a reset (``RST``) or, if it
        already got everything, nothing more (``None``)."""
        side = t.mutable(role)
        side.close()
        if role is Role.CLIENT:
            t.s2c = Channel(dead=True)
        else:
            t.c2s = Channel(dead=True)
        out = t.outbound(role)
        if outbound == RST and not out.dead:
            t.set_outbound(role, Channel((RST,)))
        elif outbound == EOF:
            t.set_outbound(role, out.eof())

    def _settle(self, t: State) -> None:
        """Release a side whose terminal handshake is complete."""
        for role in Role:
            side = t.side(role)
            if _open(side) and side.may_release:
                self._release(t, role, outbound=None)

    # ------------------------------------------------------ the misbehaving peer

    def _raw_actions(self, s: State) -> Iterator[tuple[Step, State, str]]:
        raw = s.raw
        assert raw is not None
        role = self.misbehaving
        assert role is not None
        actor = f"{role.value} (misbehaving)"
        sends: list[tuple[str, Frame, RawPeer]] = []
        if not raw.preamble:
            good = Frame("preamble", "preamble", encode_preamble(role))
            bad = Frame(
                "junk",
                "a preamble of the wrong role",
                encode_preamble(role.peer),
                breaks="the preamble names the wrong role",
            )
            sends.append(
                ("sends its preamble", good, dataclasses.replace(raw, preamble=True))
            )
            sends.append(
                (
                    "sends a wrong preamble",
                    bad,
                    dataclasses.replace(raw, preamble=True, broke=bad.breaks),
                )
            )
        elif raw.broke is None and not raw.eof:
            if not raw.ended and raw.messages < self.requests:
                k = raw.messages + 1
                data = (b"q%d" if role is Role.CLIENT else b"m%d") % k
                name = "request" if role is Role.CLIENT else "message"
                frame = Frame(
                    "message",
                    f"{name} #{k}",
                    encode_message_header(len(data)) + data,
                    Message(data),
                )
                sends.append(
                    (f"sends {name} #{k}", frame, dataclasses.replace(raw, messages=k))
                )
            if role is Role.SERVER and not raw.ended and not raw.shutdown:
                frame = Frame(
                    "shutdown",
                    "SHUTDOWN",
                    encode_shutdown(GRACE_PERIOD, REASON),
                    ShutdownRequest(GRACE_PERIOD, REASON),
                )
                sends.append(
                    ("sends SHUTDOWN", frame, dataclasses.replace(raw, shutdown=True))
                )
            if not raw.ended:
                if role is Role.CLIENT:
                    frame = Frame("end", "END", encode_end(None), End(None))
                else:
                    first = not raw.peer_end
                    frame = Frame(
                        "end",
                        "END",
                        encode_end(raw.received),
                        End(raw.received),
                        ends_first=first,
                    )
                sends.append(("sends END", frame, dataclasses.replace(raw, ended=True)))
            for rule, data in self._illegal_frames(raw):
                frame = Frame("junk", rule, data, breaks=rule)
                sends.append(
                    (f"sends {rule}", frame, dataclasses.replace(raw, broke=rule))
                )
        for action, frame, after in sends:
            t = s.copy()
            t.set_outbound(role, t.outbound(role).write(frame))
            t.raw = after
            yield (
                (actor, action, "breaks the rules" if frame.breaks else ""),
                t,
                PROGRESS,
            )
        if (raw.ended or raw.broke) and not raw.eof:
            t = s.copy()
            t.set_outbound(role, t.outbound(role).eof())
            t.raw = dataclasses.replace(raw, eof=True)
            yield (actor, "half-closes its transport", "FIN"), t, PROGRESS

    def _illegal_frames(self, raw: RawPeer) -> list[tuple[str, bytes]]:
        """The frames no rule allows that this peer may send now. Frames the
        decoder refuses whoever sends them (an unknown type, an oversize
        message) are tried from the client only, to keep the run short."""
        role = self.misbehaving
        frames: list[tuple[str, bytes]] = []
        after_end = encode_message_header(2) + b"x9"
        if role is Role.CLIENT:
            unknown = b"\x07" + _U32.pack(0)
            oversize = encode_message_header(DEFAULT_MAX_MESSAGE_SIZE + 1)
            frames += [
                ("a frame of unknown type", unknown),
                ("an oversize message", oversize),
                ("a client's SHUTDOWN", encode_shutdown(1.0, None)),
                ("a second preamble", encode_preamble(Role.CLIENT)),
            ]
            if raw.ended:
                frames += [
                    ("a message after END", after_end),
                    ("a second END", encode_end(None)),
                ]
            else:
                frames.append(("a client END with a count", encode_end(0)))
        else:
            bad_reason = bytes([SHUTDOWN]) + _U32.pack(5) + _U32.pack(1000) + b"\xff"
            frames += [
                ("a SHUTDOWN reason that is not UTF-8", bad_reason),
            ]
            if raw.ended:
                frames += [
                    ("a message after END", after_end),
                    ("a SHUTDOWN after END", encode_shutdown(1.0, None)),
                ]
            else:
                frames += [
                    ("an END counting more than was sent", encode_end(99)),
                    ("a server END without a count", bytes([END]) + _U32.pack(0)),
                ]
                if raw.shutdown:
                    frames.append(("a second SHUTDOWN", encode_shutdown(1.0, None)))
        return frames

    # ---------------------------------------------------------- the network

    def _deliveries(self, s: State, to: Role) -> Iterator[tuple[Step, State, str]]:
        channel = s.outbound(to.peer)
        if not channel.items or channel.dead:
            return
        if to is self.misbehaving:
            assert s.raw is not None
            if s.raw.gone:
                return
            yield self._deliver_to_raw(s, to)
            return
        if not _open(s.side(to)):
            return
        sizes = channel.chunk_sizes(self.fine_chunks)
        if not sizes:
            yield self._deliver_marker(s, to)
        for size in sizes:
            yield self._deliver(s, to, size)

    def _deliver_to_raw(self, s: State, to: Role) -> tuple[Step, State, str]:
        t = s.copy()
        channel = t.outbound(to.peer)
        raw = t.raw
        assert raw is not None
        frames = channel.frames()
        if frames:
            for frame in frames:
                if frame.kind == "message":
                    raw = dataclasses.replace(raw, received=raw.received + 1)
                elif frame.kind == "end":
                    raw = dataclasses.replace(raw, peer_end=True)
            rest = channel.items[len(frames) :]
            t.set_outbound(to.peer, Channel(rest, 0, channel.dead))
            what = ", ".join(f.label for f in frames)
        else:
            marker, after = channel.pop_marker()
            t.set_outbound(to.peer, after)
            if marker == RST:
                raw = dataclasses.replace(raw, gone=True)
            what = "a reset" if marker == RST else "the transport's EOF"
        t.raw = raw
        return (f"{to.value} (misbehaving)", f"receives {what}", ""), t, PROGRESS

    def _deliver_marker(self, s: State, to: Role) -> tuple[Step, State, str]:
        t = s.copy()
        side = t.mutable(to)
        marker, after = t.outbound(to.peer).pop_marker()
        t.set_outbound(to.peer, after)
        if marker == RST:
            side.connection_reset()
            self._release(t, to, outbound=None)
            t.set_outbound(to, Channel(dead=True))
            what = "a reset"
        else:
            what = "the transport's EOF"
            try:
                side.receive_eof()
            except ConnectionTruncated:
                self._release(t, to, outbound=EOF)
        self._settle(t)
        detail = self._closing(s, t, to)
        return (to.value, f"receives {what}", detail), t, PROGRESS

    def _deliver(self, s: State, to: Role, size: int) -> tuple[Step, State, str]:
        t = s.copy()
        side = t.mutable(to)
        data, done, partial, after = t.outbound(to.peer).take(size)
        t.set_outbound(to.peer, after)
        what = _describe_chunk(s.outbound(to.peer).pos, done, partial, after.pos)
        # The misbehaving peer's illegal frame: how much of it arrives here.
        for frame in done:
            if self._illegal_for(t, frame):
                t.seen = 2
        if partial is not None and self._illegal_for(t, partial):
            t.seen = max(t.seen, 1)
        try:
            events = side.receive_data(data)
        except ProtocolError as exc:
            events = list(exc.events)
            error: ProtocolError | None = exc
        else:
            error = None
        notes: list[str] = []
        legal: list[Frame] = []
        for frame in done:
            if self._illegal_for(t, frame):
                break
            legal.append(frame)
        expected = [f.expect for f in legal if f.expect is not None]
        if (t.capp if to is Role.CLIENT else t.sapp).closing:
            # Its application is closing: the core discards and counts the
            # messages instead of delivering them.
            expected = [e for e in expected if type(e) is not Message]
        if error is None and len(legal) == len(done) and events != expected:
            t.note("decoded as sent", f"{what}: got {events}, sent {expected}")
        if error is not None and events != expected:
            t.note(
                "events lost before an error",
                f"{what}: the frames before the bad one gave {events}, not {expected}",
            )
        if to is Role.CLIENT:
            self._client_events(t, events, notes)
        else:
            if any(f.kind == "end" for f in done):
                t.sapp = dataclasses.replace(t.sapp, end_delivered=True)
            self._server_events(t, events, notes)
        if error is not None:
            notes.append(f"protocol error: {error}")
            self._release(t, to, outbound=RST)
        self._settle(t)
        closing = self._closing(s, t, to)
        if closing:
            notes.append(closing)
        return (to.value, f"receives {what}", "; ".join(notes)), t, PROGRESS

    def _illegal_for(self, t: State, frame: Frame) -> bool:
        if frame.breaks is not None:
            return True
        return frame.ends_first and self.misbehaving is not None and not t.capp.ended

    def _client_events(self, t: State, events: Sequence[Any], notes: list[str]) -> None:
        app = t.capp
        for event in events:
            # (While the application closes, the core discards and counts
            # messages itself: none arrive here.)
            if type(event) is Message:
                app = dataclasses.replace(app, received=(*app.received, event.data))
            elif type(event) is ShutdownRequest:
                app = dataclasses.replace(app, shutdown_seen=True)
                notes.append("it must finish")
            elif type(event) is End:
                app = dataclasses.replace(app, got_end=True)
                if self.symmetric:
                    notes.append("takes it as final: no more replies")
                    missing = sorted(set(range(1, app.sent + 1)) - set(app.replies()))
                    if missing:
                        names = ", ".join(f"#{k}" for k in missing)
                        notes.append(f"request {names} still unanswered")
        t.capp = app

    def _server_events(self, t: State, events: Sequence[Any], notes: list[str]) -> None:
        app = t.sapp
        for event in events:
            if type(event) is Message:
                k = int(event.data[1:])
                app = dataclasses.replace(app, requests=(*app.requests, k))
                if app.ended:
                    app = dataclasses.replace(app, late=(*app.late, k))
                    notes.append(f"cannot answer request #{k}: it already sent END")
            elif type(event) is End:
                app = dataclasses.replace(app, got_end=True)
        t.sapp = app

    def _closing(self, before: State, after: State, role: Role) -> str:
        """Describe a side that released its transport in this step."""
        parts = []
        for r in Role:
            if _open(before.side(r)) and not _open(after.side(r)):
                term = after.side(r).termination
                who = "" if r is role else f"{r.value} "
                parts.append(f"{who}closes: {term.kind.name}")
        return "; ".join(parts)

    # ---------------------------------------------------------- invariants

    def check(self, s: State) -> list[tuple[str, str]]:
        """The invariants broken in ``s``: ``(invariant, explanation)``."""
        problems = list(s.notes)
        if self.misbehaving is not None:
            honest = s.side(self.misbehaving.peer)
            term = honest.termination
            if term is not None:
                protocol_error = term.kind is TerminationKind.PROTOCOL_ERROR
                if s.seen == 2 and not protocol_error:
                    problems.append(
                        (
                            "violation not reported",
                            f"the {self.misbehaving.value} sent "
                            f"{_broken_rule(s.raw)}, and the "
                            f"{self.misbehaving.peer.value} ended {term.kind.name}",
                        )
                    )
                if s.seen == 0 and protocol_error:
                    problems.append(
                        (
                            "false protocol error",
                            f"no illegal frame arrived, yet: {term.detail}",
                        )
                    )
            return problems
        cterm = s.client.termination
        sterm = s.server.termination
        replies = s.capp.replies()
        if cterm is not None and cterm.clean and not cterm.messages_discarded:
            missing = sorted(set(range(1, s.capp.sent + 1)) - set(replies))
            if missing:
                problems.append(
                    (
                        "lost reply",
                        f"the client ended CLEAN without a reply to request(s) "
                        f"{missing}",
                    )
                )
            if cterm.confirmed is not True:
                problems.append(
                    (
                        "unconfirmed",
                        f"the client ended CLEAN with confirmed={cterm.confirmed}",
                    )
                )
        if (
            sterm is not None
            and sterm.clean
            and not s.capp.got_end
            and (cterm is None or cterm.clean or cterm.initiator is not Initiator.LOCAL)
            and (cterm is not None or not _open(s.client) or s.s2c.dead)
        ):
            problems.append(
                (
                    "server CLEAN, END unheard",
                    "the server ended CLEAN, and the client never received its "
                    f"END without having given up itself (client: "
                    f"{cterm.kind.name if cterm else 'open'})",
                )
            )
        if (
            cterm is not None
            and sterm is not None
            and cterm.clean
            and sterm.clean
            and not cterm.messages_discarded
            and not sterm.messages_discarded
        ):
            if s.client.messages_sent != len(s.sapp.requests):
                problems.append(
                    (
                        "lost message",
                        f"the client sent {s.client.messages_sent} messages, the "
                        f"server's application got {len(s.sapp.requests)}; both CLEAN",
                    )
                )
            if s.server.messages_sent != len(s.capp.received):
                problems.append(
                    (
                        "lost message",
                        f"the server sent {s.server.messages_sent} messages, the "
                        f"client's application got {len(s.capp.received)}; both CLEAN",
                    )
                )
        if replies != list(range(1, len(replies) + 1)) or list(s.sapp.requests) != list(
            range(1, len(s.sapp.requests) + 1)
        ):
            problems.append(("out of order", f"{replies} / {s.sapp.requests}"))
        for role, term in ((Role.CLIENT, cterm), (Role.SERVER, sterm)):
            if term is not None and term.kind is TerminationKind.PROTOCOL_ERROR:
                problems.append(
                    ("unexpected protocol error", f"{role.value}: {term.detail}")
                )
        return problems

    def seed_loss(self, s: State) -> bool:
        """The loss described in the project's background: both sides end
        CLEAN, the server got a request after its END and could not answer,
        and the client is missing that reply."""
        return (
            self.is_end(s)
            and s.client.termination.clean
            and s.server.termination.clean
            and bool(s.sapp.late)
            and len(s.capp.replies()) < s.capp.sent
        )


def _describe_chunk(
    pos: int, done: list[Frame], partial: Frame | None, left: int
) -> str:
    """Name what one delivery carried: whole frames, the rest of a frame
    begun earlier, some bytes of one left incomplete."""
    names = [f.label for f in done]
    if done and pos:
        names[0] = f"the rest of {done[0].label}"
    if partial is not None:
        got = left - pos if not done else left
        more = " more" if pos and not done else ""
        names.append(f"{got}{more} of {len(partial.data)} bytes of {partial.label}")
    return ", ".join(names)


def _broken_rule(raw: RawPeer | None) -> str:
    if raw is not None and raw.broke is not None:
        return raw.broke
    return "its END before the client's END"


# ---------------------------------------------------------------- exploring

S = TypeVar("S")


class Model(Protocol[S]):
    """What :func:`explore` needs from a model."""

    liveness: bool

    def initial(self) -> S: ...
    def key(self, s: S) -> Hashable: ...
    def successors(self, s: S) -> Iterator[tuple[Step, S, str]]: ...
    def check(self, s: S) -> list[tuple[str, str]]: ...
    def is_end(self, s: S) -> bool: ...
    def is_clean_end(self, s: S) -> bool: ...
    def undisturbed(self, s: S) -> bool: ...


@dataclasses.dataclass
class Violation:
    """An invariant broken in some reachable state, with the shortest trace
    that reaches such a state."""

    invariant: str
    explanation: str
    trace: list[Step]


@dataclasses.dataclass
class Exploration:
    """What :func:`explore` found."""

    model: str
    states: int
    transitions: int
    end_states: int
    depth: int
    seconds: float
    violations: dict[str, Violation]
    found: dict[str, list[Step]]

    def summary(self) -> str:
        lines = [
            f"{self.model}: {self.states} states, {self.transitions} transitions, "
            f"{self.end_states} end states, depth {self.depth}, "
            f"{self.seconds:.1f} s, {len(self.violations)} invariant(s) broken"
        ]
        for v in self.violations.values():
            lines.append(f"  {v.invariant}: {v.explanation} ({len(v.trace)} steps)")
        return "\n".join(lines)


def explore(
    model: Model[S],
    *,
    targets: Mapping[str, Callable[[S], bool]] | None = None,
) -> Exploration:
    """Visit every state reachable from ``model.initial()``, breadth first.

    Returns the counts, the first (so shortest) violation of each invariant,
    and the shortest trace to a state satisfying each of ``targets``.
    """
    started = time.perf_counter()
    targets = dict(targets or {})
    initial = model.initial()
    index: dict[Hashable, int] = {model.key(initial): 0}
    parent = [-1]
    step_of: list[Step | None] = [None]
    depth = [0]
    queue: deque[tuple[int, S]] = deque([(0, initial)])
    liveness = model.liveness
    back_fair: list[list[int]] = [[]]  # reverse edges, no aborts
    back_coop: list[list[int]] = [[]]  # reverse edges, no aborts or timeouts
    ends: list[int] = []
    clean_ends: list[int] = []
    undisturbed: list[int] = []
    violations: dict[str, Violation] = {}
    found: dict[str, list[Step]] = {}
    transitions = 0

    def trace(i: int) -> list[Step]:
        out: list[Step] = []
        while i > 0:
            step = step_of[i]
            assert step is not None
            out.append(step)
            i = parent[i]
        return out[::-1]

    while queue:
        i, s = queue.popleft()
        for invariant, explanation in model.check(s):
            if invariant not in violations:
                violations[invariant] = Violation(invariant, explanation, trace(i))
        for name, predicate in targets.items():
            if name not in found and predicate(s):
                found[name] = trace(i)
        if model.is_end(s):
            ends.append(i)
            if liveness and model.is_clean_end(s):
                clean_ends.append(i)
        elif liveness and model.undisturbed(s):
            undisturbed.append(i)
        for step, t, kind in model.successors(s):
            transitions += 1
            key = model.key(t)
            j = index.get(key)
            if j is None:
                j = len(parent)
                index[key] = j
                parent.append(i)
                step_of.append(step)
                depth.append(depth[i] + 1)
                queue.append((j, t))
                if liveness:
                    back_fair.append([])
                    back_coop.append([])
            if liveness and kind != ABORT:
                back_fair[j].append(i)
                if kind == PROGRESS:
                    back_coop[j].append(i)

    if liveness:
        can_end = _reaches(back_fair, ends, len(parent))
        for i in range(len(parent)):
            if not can_end[i]:
                violations["no way to end"] = Violation(
                    "no way to end",
                    "no end state is reachable without an abort",
                    trace(i),
                )
                break
        can_end_clean = _reaches(back_coop, clean_ends, len(parent))
        for i in undisturbed:
            if not can_end_clean[i]:
                violations["no clean end"] = Violation(
                    "no clean end",
                    "nothing went wrong, yet no CLEAN end is reachable",
                    trace(i),
                )
                break
    return Exploration(
        model=str(model),
        states=len(parent),
        transitions=transitions,
        end_states=len(ends),
        depth=max(depth),
        seconds=time.perf_counter() - started,
        violations=violations,
        found=found,
    )


def _reaches(back: list[list[int]], targets: list[int], n: int) -> bytearray:
    """Which states reach one of ``targets``, following ``back`` edges."""
    seen = bytearray(n)
    stack = list(targets)
    for i in stack:
        seen[i] = 1
    while stack:
        i = stack.pop()
        for j in back[i]:
            if not seen[j]:
                seen[j] = 1
                stack.append(j)
    return seen


# ---------------------------------------------------------------- traces


def format_trace(trace: Sequence[Step]) -> str:
    """A trace as numbered lines: ``1. client -> sends request #1 (in flight)``."""
    lines = []
    for n, (actor, action, detail) in enumerate(trace, 1):
        suffix = f" ({detail})" if detail else ""
        lines.append(f"{n}. {actor} -> {action}{suffix}")
    return "\n".join(lines)


def symmetric_counterexample(requests: int = 3) -> list[Step]:
    """The shortest trace in which symmetric half-close loses a reply
    silently: the server ends first, then receives a request it can no longer
    answer, and both sides end CLEAN.

    Returns it as data, ``[(actor, action, detail), ...]``, for tests and for
    drawing a sequence diagram.
    """
    model = ConnectionModel(requests=requests, symmetric=True, aborts=False)
    result = explore(model, targets={"seed loss": model.seed_loss})
    return result.found["seed loss"]
