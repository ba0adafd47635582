"""Cutting a byte stream (TCP, TLS) into SIP messages by Content-Length
(RFC 3261 §18.3) and telling RFC 5626 §3.5.1 CRLF keep-alives apart from them.

Sans-IO: bytes go in through `StreamFramer.feed`, whole messages and keep-alive
pings come out; the caller owns the socket and answers a ping with `PONG`.
"""

from __future__ import annotations

import enum
import re

from .errors import ParseError
from .message import DEFAULT_LIMITS, Limits

PONG = b"\r\n"
_PING = b"\r\n\r\n"
_CR_LF = b"\r\n"

# A robust peer may end lines with a bare LF, so the head ends at any of
# CRLFCRLF, LFLF, LFCRLF, CRLFLF — never longer than four bytes.
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_BLANK_LINE_MAX = 4
_CONTENT_LENGTH_RE = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
_MAX_LENGTH_DIGITS = 10


class KeepAlive(enum.Enum):
    """A double-CRLF ping from the peer; answer it with `PONG`."""

    PING = "ping"


Frame = bytes | KeepAlive


class FramingError(ParseError):
    """The stream cannot be cut into messages any more.

    Unlike a `ParseError` on one message, there is no way to find where the
    next message starts, so the connection MUST be closed once the error is
    answered. `head` holds the start line and headers read so far (to answer
    the request if it can be addressed); `frames` the complete frames that came
    before the error in the same `feed`, still to be delivered.
    """

    def __init__(self, status: int, reason: str, head: bytes = b"") -> None:
        super().__init__(status, reason)
        self.head = head
        self.frames: list[Frame] = []


class _State(enum.Enum):
    BETWEEN = "between messages"
    HEAD = "reading the head"
    BODY = "reading the body"


class StreamFramer:
    """Frames one connection's inbound bytes; create one per connection.

    The buffer never holds more than one message (bounded by
    `limits.max_message_size`) plus the rest of the last read, and each byte is
    scanned for the end of the head about once, however the stream is split.
    """

    __slots__ = ("_body_end", "_buffer", "_error", "_limit", "_pos", "_scan", "_state")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limit = limits.max_message_size
        self._buffer = bytearray()
        self._state = _State.BETWEEN
        self._pos = 0  # between messages: the next unread byte; else the message start
        self._scan = 0  # where the search for the blank line resumes
        self._body_end = 0
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer) - self._pos

    def feed(self, data: bytes) -> list[Frame]:
        """Add `data` and return every frame it completes, in order.

        Raises `FramingError` when the stream turns out unframeable, and again
        on every later call: the connection must be closed.
        """
        if self._error is not None:
            self._error.frames = []  # delivered with the first raise
            raise self._error
        self._buffer += data
        frames: list[Frame] = []
        try:
            while (frame := self._next_frame()) is not None:
                frames.append(frame)
        except FramingError as error:
            self._buffer.clear()
            self._pos = 0
            error.frames = frames
            self._error = error
            raise
        self._compact()
        return frames

    def _next_frame(self) -> Frame | None:
        if self._state is _State.BETWEEN:
            keep_alive = self._skip_keep_alives()
            if keep_alive is not None or self._state is _State.BETWEEN:
                return keep_alive
        if self._state is _State.HEAD and not self._find_head_end():
            return None
        if len(self._buffer) < self._body_end:
            return None
        frame = bytes(self._buffer[self._pos : self._body_end])
        self._pos = self._body_end
        self._state = _State.BETWEEN
        return frame

    def _skip_keep_alives(self) -> KeepAlive | None:
        """Consume CRLFs between messages; stop at a ping or a message's first byte."""
        buffer = self._buffer
        pos = self._pos
        end = len(buffer)
        while pos < end and buffer[pos] in _CR_LF:
            ahead = buffer[pos : pos + len(_PING)]
            if ahead == _PING:
                self._pos = pos + len(_PING)
                return KeepAlive.PING
            if len(ahead) < len(_PING) and _PING.startswith(ahead):
                break  # a ping may still be arriving
            # A single CRLF is a pong (RFC 5626 §3.5.1) and a stray CR or LF
            # is noise a robust reader skips; neither needs an answer.
            pos += len(_CR_LF) if ahead.startswith(_CR_LF) else 1
        self._pos = pos
        if pos < end and buffer[pos] not in _CR_LF:
            self._state = _State.HEAD
            self._scan = pos
        return None

    def _find_head_end(self) -> bool:
        buffer = self._buffer
        start = self._pos
        match = _BLANK_LINE_RE.search(buffer, self._scan)
        if match is None:
            if len(buffer) - start > self._limit:
                head = bytes(buffer[start : start + self._limit])
                # Only whole lines: a cut Via could name the wrong host.
                raise FramingError(513, "Message Too Large", head[: head.rfind(b"\n") + 1])
            # A blank line split across reads starts at most three bytes back.
            self._scan = max(start, len(buffer) - (_BLANK_LINE_MAX - 1))
            return False
        length = self._content_length(start, match.start())
        self._body_end = match.end() + length
        if self._body_end - start > self._limit:
            raise FramingError(513, "Message Too Large", bytes(buffer[start : match.start()]))
        self._state = _State.BODY
        return True

    def _content_length(self, start: int, head_end: int) -> int:
        """The body length the head announces; on a stream it is mandatory."""
        values = {m.group(1) for m in _CONTENT_LENGTH_RE.finditer(self._buffer, start, head_end)}

        def fail(reason: str) -> FramingError:
            return FramingError(400, reason, bytes(self._buffer[start:head_end]))

        if not values:
            raise fail("Missing Content-Length")
        if len(values) > 1:
            raise fail("Conflicting Content-Length")
        text = values.pop()
        if not text.isdigit() or len(text) > _MAX_LENGTH_DIGITS:
            raise fail("Malformed Content-Length")
        return int(text)

    def _compact(self) -> None:
        # Dropping a bytearray's prefix is cheap in CPython (the start pointer
        # moves), so it is done once per feed, not once per frame.
        if self._pos:
            del self._buffer[: self._pos]
            self._scan = max(0, self._scan - self._pos)
            self._body_end -= self._pos
            self._pos = 0
