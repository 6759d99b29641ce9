"""The local write-ahead spool: the source of truth for a record until the database confirms it.

Layout: one directory per server process (claimed with an exclusive ``flock``), holding
segment files ``NNNNNNNNNNNNNNNN.seg`` and a ``committed`` watermark. Each record is framed as

    u32 payload length | u32 crc32(lsn + payload) | u64 lsn | payload

LSNs (log sequence numbers) increase by one per record. The shipper commits records in LSN
order, so everything at or below the watermark is in the database; a sealed segment whose last
LSN is at or below it is deleted. On open, every segment is checked: a torn tail is cut, a
record whose checksum fails is moved to ``quarantine`` — neither stops the server.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from predictd.errors import NotDurable

log = logging.getLogger("predictd.spool")

HEADER = struct.Struct("<IIQ")
MAX_RECORD_BYTES = 16 << 20
ROTATE_COMMITTED_BYTES = 1 << 20
WATERMARK_INTERVAL_S = 1.0
_LSN = struct.Struct("<Q")


class NoSpace(Exception):
    """The spool's file system is full: the records were not written (and nothing half-way
    was left behind)."""


def frame(lsn: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(_LSN.pack(lsn)))
    return HEADER.pack(len(payload), crc, lsn) + payload


@dataclass
class Segment:
    seq: int
    path: Path
    size: int = 0
    first_lsn: int = -1
    last_lsn: int = -1


@dataclass
class RecoveryReport:
    segments: int = 0
    records: int = 0
    torn_bytes: int = 0
    quarantined: int = 0
    pending_from_lsn: int = 0
    notes: list[str] = field(default_factory=list)


def _iter_frames(f: BinaryIO, end: int) -> Iterator[tuple[int, int, bytes | None, int]]:
    """Yield (offset, lsn, payload or None if the checksum fails, frame size) up to ``end``.

    Stops at a torn or implausible frame; the caller sees where from ``f.tell()`` is not
    needed: the last yielded offset + size is where good data ended.
    """
    offset = f.tell()
    while offset + HEADER.size <= end:
        header = f.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        length, crc, lsn = HEADER.unpack(header)
        if length > MAX_RECORD_BYTES or offset + HEADER.size + length > end:
            return
        payload = f.read(length)
        if len(payload) < length:
            return
        ok = zlib.crc32(payload, zlib.crc32(_LSN.pack(lsn))) == crc
        yield offset, lsn, payload if ok else None, HEADER.size + length
        offset += HEADER.size + length


class Spool:
    """Append-only, checksummed segments in one claimed directory."""

    def __init__(
        self,
        root: Path,
        *,
        segment_bytes: int,
        max_bytes: int,
        fsync: bool,
        directory: Path | None = None,
    ) -> None:
        self.base = root
        self.wanted = directory  # claim exactly this directory (adopting an orphan)
        self.segment_bytes = min(segment_bytes, max(max_bytes // 4, 4096))
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.dir: Path = root
        self._lock_fd: int | None = None
        self._segments: list[Segment] = []
        self._fd: int | None = None
        self._next_lsn = 0
        self._committed = -1
        self._bytes = 0
        self._active_marks: deque[tuple[int, int]] = deque()  # (last lsn, end offset)
        self._active_committed = 0
        self._read_hint: tuple[int, int, int] | None = None
        self._watermark_written_at = -1e9  # (segment seq, offset, next lsn)
        self._sync_waiters: list[asyncio.Future[None]] = []
        self._sync_task: asyncio.Task[None] | None = None
        self._to_close: list[int] = []
        self._no_space = False  # the disk refused a write; cleared once a segment is freed
        # Strict mode: records up to synced_lsn went through an fsync round; the ranges in
        # _void were in a round that failed (their requests got 503), so they are never
        # shipped by this process (after a restart they are replayed like any record).
        self.synced_lsn = -1
        self._void: list[tuple[int, int]] = []

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Claim a directory and recover it. Raises BlockingIOError when the wanted directory
        is held by a live process."""
        self.dir = self._claim_directory() if self.wanted is None else self._claim(self.wanted)
        report = self._recover()
        self._rotate()
        self.synced_lsn = self.last_lsn
        return report

    def _claim_directory(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        for index in range(1024):
            try:
                return self._claim(self.base / f"w{index}")
            except BlockingIOError:
                continue
        raise RuntimeError(f"no free spool directory under {self.base}")

    def _claim(self, candidate: Path) -> Path:
        """Hold ``candidate`` with an exclusive flock (released by the kernel if we die)."""
        candidate.mkdir(parents=True, exist_ok=True)
        fd = os.open(candidate / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        self._lock_fd = fd
        return candidate

    def orphans(self) -> list[Path]:
        """Other processes' directories that still hold segments; those whose process is
        gone can be claimed (``directory=``) and shipped. Live ones refuse the claim."""
        return sorted(
            d for d in self.base.glob("w*") if d != self.dir and d.is_dir() and any(d.glob("*.seg"))
        )

    def close(self) -> None:
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        for fd in self._to_close:
            os.close(fd)
        self._to_close.clear()
        self._write_watermark()
        if self._lock_fd is not None:
            # All shipped: leave no segment behind, so nobody re-reads it to find nothing.
            self._delete_committed(sealed_only=False)
        if self._segments and self._segments[-1].size == 0:
            self._segments[-1].path.unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- recovery ------------------------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        report = RecoveryReport()
        watermark = self.dir / "committed"
        try:
            self._committed = int(watermark.read_text().strip() or -1)
        except (FileNotFoundError, ValueError):
            self._committed = -1
        max_lsn = self._committed
        for path in sorted(self.dir.glob("*.seg")):
            segment = self._recover_segment(path, report)
            if segment.size == 0:
                path.unlink()
                continue
            self._segments.append(segment)
            self._bytes += segment.size
            max_lsn = max(max_lsn, segment.last_lsn)
            report.segments += 1
        self._next_lsn = max_lsn + 1
        # Segments wholly at or below the watermark were committed before a crash.
        self._delete_committed(sealed_only=False)
        report.pending_from_lsn = self._committed + 1
        return report

    def _recover_segment(self, path: Path, report: RecoveryReport) -> Segment:
        seq = int(path.stem)
        segment = Segment(seq, path)
        size = path.stat().st_size
        good: list[tuple[int, int]] = []
        bad: list[tuple[int, int]] = []
        end_of_good = 0
        with path.open("rb") as f:
            for offset, lsn, payload, frame_size in _iter_frames(f, size):
                end_of_good = offset + frame_size
                if payload is None:
                    bad.append((offset, frame_size))
                    continue
                good.append((offset, frame_size))
                report.records += 1
                if segment.first_lsn < 0:
                    segment.first_lsn = lsn
                segment.last_lsn = lsn
            if end_of_good < size:
                tail = size - end_of_good
                f.seek(end_of_good)
                head = f.read(min(tail, HEADER.size))
                if len(head) == HEADER.size and HEADER.unpack(head)[0] > MAX_RECORD_BYTES:
                    bad.append((end_of_good, tail))  # unreadable framing: keep for forensics
                else:
                    report.torn_bytes += tail
                    log.warning(
                        "spool: cut a torn tail", extra={"segment": path.name, "bytes": tail}
                    )
            if bad:
                self._quarantine(f, path, bad, report)
        if bad:
            self._rewrite(path, good)
        elif end_of_good < size:
            os.truncate(path, end_of_good)
        segment.size = sum(n for _, n in good)
        return segment

    def _quarantine(
        self, f: BinaryIO, path: Path, spans: list[tuple[int, int]], report: RecoveryReport
    ) -> None:
        with (self.dir / "quarantine").open("ab") as q:
            for offset, length in spans:
                f.seek(offset)
                q.write(f.read(length))
        report.quarantined += len(spans)
        note = f"quarantined {len(spans)} corrupt record(s) from {path.name}"
        report.notes.append(note)
        log.error("spool: " + note, extra={"segment": path.name, "records": len(spans)})

    @staticmethod
    def _rewrite(path: Path, spans: list[tuple[int, int]]) -> None:
        tmp = path.with_suffix(".tmp")
        with path.open("rb") as src, tmp.open("wb") as dst:
            for offset, length in spans:
                src.seek(offset)
                dst.write(src.read(length))
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)

    # -- writing -------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self._bytes >= self.max_bytes or self._no_space

    @property
    def size_bytes(self) -> int:
        """Bytes on disk, committed records in the active segment included."""
        return self._bytes

    @property
    def pending_bytes(self) -> int:
        """Bytes of records the database has not confirmed yet."""
        return self._bytes - self._active_committed

    @property
    def last_lsn(self) -> int:
        return self._next_lsn - 1

    @property
    def committed_lsn(self) -> int:
        return self._committed

    def append(self, payloads: list[bytes]) -> int:
        """Write records with one write(2); returns the LSN of the first one."""
        if self._fd is None:
            raise RuntimeError("spool is not open")
        segment = self._segments[-1]
        if segment.size >= self.segment_bytes:
            self._rotate()
            segment = self._segments[-1]
        first = self._next_lsn
        data = b"".join(frame(first + i, p) for i, p in enumerate(payloads))
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # short writes are legal; finish or raise
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            # Cut what did get written, so the next frame starts where the segment says.
            try:
                os.ftruncate(self._fd, segment.size)
            except OSError:
                log.exception("spool: could not cut a partly written frame; rotating")
                self._rotate()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                if not self._no_space:
                    log.error("spool: the disk is full", extra={"dir": str(self.dir)})
                self._no_space = True
                raise NoSpace(str(exc)) from exc
            raise
        self._next_lsn += len(payloads)
        if segment.first_lsn < 0:
            segment.first_lsn = first
        segment.last_lsn = self._next_lsn - 1
        segment.size += len(data)
        self._bytes += len(data)
        self._active_marks.append((segment.last_lsn, segment.size))
        return first

    def _rotate(self) -> None:
        if self._fd is not None:
            if self.fsync:
                self._to_close.append(self._fd)  # the next group commit syncs and closes it
            else:
                os.close(self._fd)
        seq = self._segments[-1].seq + 1 if self._segments else 0
        path = self.dir / f"{seq:016d}.seg"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segments.append(Segment(seq, path))
        self._active_marks.clear()
        self._active_committed = 0

    async def sync(self) -> None:
        """Group commit: one fsync serves every caller waiting when it starts."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sync_waiters.append(waiter)
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._sync_loop())
        await waiter

    async def _sync_loop(self) -> None:
        while self._sync_waiters:
            # Every record up to ``upto`` has its waiter here: record() appends and calls
            # sync() with no await in between.
            waiters, self._sync_waiters = self._sync_waiters, []
            upto = self.last_lsn
            fds, self._to_close = [*self._to_close], []
            active = self._fd
            try:
                await asyncio.to_thread(self._fsync_all, fds, active)
            except OSError as exc:
                log.error("spool: fsync failed", extra={"error": str(exc)})
                if upto > self.synced_lsn:
                    self._void.append((self.synced_lsn + 1, upto))
                    self.synced_lsn = upto
                for w in waiters:
                    if not w.done():
                        w.set_exception(NotDurable("the spool could not be synced to disk"))
                continue
            self.synced_lsn = max(self.synced_lsn, upto)
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _fsync_all(self, to_close: list[int], active: int | None) -> None:
        try:
            for fd in to_close:
                os.fsync(fd)
            if active is not None:
                os.fdatasync(active)
            if to_close:
                dir_fd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        finally:
            for fd in to_close:
                os.close(fd)

    # -- reading and committing ---------------------------------------------------------

    def read(self, after_lsn: int, until_lsn: int, limit: int) -> list[tuple[int, bytes]]:
        """Records with after_lsn < lsn <= until_lsn, at most ``limit``; safe in a thread
        while the event loop appends (it never reads past sizes known when called).

        Remembers where the last read stopped, so reading a backlog front to back is linear.
        """
        out: list[tuple[int, bytes]] = []
        hint = self._read_hint
        for segment in [s for s in self._segments if s.last_lsn > after_lsn]:
            if segment.first_lsn > until_lsn:
                break
            start = 0
            if hint is not None and hint[0] == segment.seq and hint[2] <= after_lsn + 1:
                start = hint[1]
            with segment.path.open("rb") as f:
                f.seek(start)
                for offset, lsn, payload, size in _iter_frames(f, segment.size):
                    if lsn <= after_lsn or payload is None:
                        continue
                    if lsn > until_lsn or len(out) >= limit:
                        return out
                    out.append((lsn, payload))
                    self._read_hint = (segment.seq, offset + size, lsn + 1)
        return out

    def is_void(self, lsn: int) -> bool:
        return any(first <= lsn <= last for first, last in self._void)

    @property
    def has_void(self) -> bool:
        """Any record this process must not ship (strict mode, a failed fsync)?"""
        return bool(self._void)

    def commit(self, lsn: int) -> None:
        """Everything up to ``lsn`` is in the database: persist that and drop dead segments."""
        if lsn <= self._committed:
            return
        self._committed = lsn
        if self._void:
            self._void = [(first, last) for first, last in self._void if last > lsn]
        now = time.monotonic()
        if now - self._watermark_written_at >= WATERMARK_INTERVAL_S:
            # A stale watermark only means replaying records the database already has
            # (idempotent), so it is persisted at most once a second, and on close.
            self._write_watermark()
            self._watermark_written_at = now
        marks = self._active_marks
        while marks and marks[0][0] <= lsn:
            self._active_committed = marks.popleft()[1]
        active = self._segments[-1] if self._segments else None
        if (
            active is not None
            and 0 <= active.last_lsn <= lsn
            and active.size >= min(self.segment_bytes, ROTATE_COMMITTED_BYTES)
        ):
            self._rotate()  # a fully committed segment of some size: start afresh, drop it
        self._delete_committed(sealed_only=True)

    def _write_watermark(self) -> None:
        if self._lock_fd is None:
            return
        tmp = self.dir / "committed.tmp"
        try:
            tmp.write_text(str(self._committed))
            os.replace(tmp, self.dir / "committed")
        except OSError as exc:  # a full disk: a stale watermark only costs a replay
            log.warning("spool: watermark not written", extra={"error": str(exc)})

    def _delete_committed(self, *, sealed_only: bool) -> None:
        keep: list[Segment] = []
        last_index = len(self._segments) - 1
        for index, segment in enumerate(self._segments):
            sealed = index < last_index or not sealed_only
            if sealed and 0 <= segment.last_lsn <= self._committed:
                segment.path.unlink(missing_ok=True)
                self._bytes -= segment.size
                self._no_space = False
            else:
                keep.append(segment)
        self._segments = keep
