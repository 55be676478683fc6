"""Typed errors of the codec.

Owns: the two exception types every caller of `cth01.protocol` may see. Every error names where
it happened (byte offset, command id, dialect or field) and why, so a log line is enough to
understand a bad frame. Nothing else in the codec raises to its callers.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Base class of the codec's errors."""


class DecodeError(ProtocolError):
    """A payload that is not a valid CTH01 frame.

    `offset` is the 0-based byte position in the payload where the problem was found,
    `command` the command id being decoded there (None before the first id), `dialect` the
    dialect that was tried ("firmware", "guide"; for auto-detection both reasons are joined).
    """

    def __init__(
        self,
        reason: str,
        *,
        offset: int | None = None,
        command: int | None = None,
        dialect: str | None = None,
    ) -> None:
        self.reason = reason
        self.offset = offset
        self.command = command
        self.dialect = dialect
        super().__init__(reason)

    def __str__(self) -> str:
        where = []
        if self.dialect:
            where.append(f"dialect={self.dialect}")
        if self.offset is not None:
            where.append(f"offset={self.offset}")
        if self.command is not None:
            where.append(f"command=0x{self.command:02x}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes
        return (_rebuild_decode_error, (self.reason, self.offset, self.command, self.dialect))


def _rebuild_decode_error(
    reason: str, offset: int | None, command: int | None, dialect: str | None
) -> DecodeError:
    return DecodeError(reason, offset=offset, command=command, dialect=dialect)


class EncodeError(ProtocolError):
    """A value that cannot be put on the wire: names the command, the field, the value and
    what would have been allowed."""

    def __init__(
        self, reason: str, *, command: str | None = None, field: str | None = None,
        value: object = None, allowed: str | None = None,
    ) -> None:
        self.reason = reason
        self.command = command
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(reason)

    def __str__(self) -> str:
        head = ".".join(p for p in (self.command, self.field) if p)
        text = f"{head}: {self.reason}" if head else self.reason
        if self.field is not None:
            text += f" (got {self.value!r}"
            text += f"; allowed {self.allowed})" if self.allowed else ")"
        return text
