"""The write-ahead spool on its own: framing, rotation, watermark, recovery, claiming."""

from __future__ import annotations

import asyncio
from pathlib import Path

from predictd.recording.spool import HEADER, RecoveryReport, Spool


def open_spool(root: Path, **kw: int | bool) -> Spool:
    options: dict[str, int | bool] = {
        "segment_bytes": 1 << 20,
        "max_bytes": 1 << 30,
        "fsync": False,
    }
    options.update(kw)
    spool = Spool(root, **options)  # type: ignore[arg-type]
    spool.open()
    return spool


def reopen(root: Path) -> tuple[Spool, RecoveryReport]:
    spool = Spool(root, segment_bytes=1 << 20, max_bytes=1 << 30, fsync=False)
    return spool, spool.open()


def written_segment(root: Path, records: int) -> Path:
    """A closed spool holding ``records`` records; returns its segment file."""
    spool = open_spool(root)
    spool.append(payloads(records))
    spool.close()
    return sorted(spool.dir.glob("*.seg"))[0]


def payloads(n: int, start: int = 0) -> list[bytes]:
    return [f'{{"n": {i}}}'.encode() for i in range(start, start + n)]


def test_append_read_and_commit(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    first = spool.append(payloads(3))
    assert first == 0
    assert spool.append(payloads(2, 3)) == 3
    assert spool.read(-1, spool.last_lsn, 100) == list(enumerate(payloads(5)))
    assert spool.read(1, 3, 100) == [(2, b'{"n": 2}'), (3, b'{"n": 3}')]
    assert spool.read(-1, 10, 2) == list(enumerate(payloads(2)))
    assert spool.pending_bytes == spool.size_bytes > 0
    spool.commit(4)
    assert spool.pending_bytes == 0
    spool.close()


def test_rotation_deletes_committed_segments(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    for i in range(100):
        spool.append([b"x" * 200 + str(i).encode()])
    segments = sorted(spool.dir.glob("*.seg"))
    assert len(segments) > 3
    spool.commit(50)
    remaining = sorted(spool.dir.glob("*.seg"))
    assert len(remaining) < len(segments)
    lsns = [lsn for lsn, _ in spool.read(-1, spool.last_lsn, 1000)]
    assert lsns[0] <= 51
    assert lsns[-1] == 99
    spool.close()


def test_reopen_replays_only_past_the_watermark(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append(payloads(10))
    spool.commit(5)
    spool.close()

    again = open_spool(tmp_path)
    assert again.committed_lsn == 5
    report_lsns = [lsn for lsn, _ in again.read(again.committed_lsn, again.last_lsn, 100)]
    assert report_lsns == [6, 7, 8, 9]
    assert again.append(payloads(1)) == 10  # numbering continues
    again.close()


def test_torn_tail_is_cut(tmp_path: Path) -> None:
    segment = written_segment(tmp_path, 4)
    with segment.open("ab") as f:
        f.write(HEADER.pack(100, 0, 4) + b"half-writ")  # a crash mid-write
    size_before = segment.stat().st_size

    again, report = reopen(tmp_path)
    assert report.torn_bytes == HEADER.size + 9
    assert segment.stat().st_size == size_before - report.torn_bytes
    assert [lsn for lsn, _ in again.read(-1, again.last_lsn, 100)] == [0, 1, 2, 3]
    again.close()


def test_corrupt_record_is_quarantined_and_the_rest_kept(tmp_path: Path) -> None:
    segment = written_segment(tmp_path, 5)
    directory = segment.parent
    data = bytearray(segment.read_bytes())
    frame_size = HEADER.size + len(b'{"n": 0}')
    data[2 * frame_size + HEADER.size + 2] ^= 0xFF  # flip a payload byte of record 2
    segment.write_bytes(bytes(data))

    again, report = reopen(tmp_path)
    assert report.quarantined == 1
    assert (directory / "quarantine").stat().st_size == frame_size
    assert [lsn for lsn, _ in again.read(-1, again.last_lsn, 100)] == [0, 1, 3, 4]
    again.close()


def test_garbage_framing_is_quarantined_not_fatal(tmp_path: Path) -> None:
    segment = written_segment(tmp_path, 2)
    with segment.open("ab") as f:
        f.write(b"\xff" * 64)  # a length field no record could have

    again, report = reopen(tmp_path)
    assert report.quarantined == 1
    assert [lsn for lsn, _ in again.read(-1, again.last_lsn, 100)] == [0, 1]
    again.close()


def test_each_process_claims_its_own_directory(tmp_path: Path) -> None:
    first = open_spool(tmp_path)
    second = open_spool(tmp_path)
    assert first.dir != second.dir
    first.close()
    third = open_spool(tmp_path)
    assert third.dir == tmp_path / "w0"  # released by close (or by the process dying)
    second.close()
    third.close()


def test_full_reflects_the_byte_limit(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=1 << 14, max_bytes=1 << 16)
    while not spool.full:
        spool.append([b"y" * 1000])
    assert spool.size_bytes >= 1 << 16
    spool.commit(spool.last_lsn)
    assert not spool.full
    spool.close()


async def test_strict_group_commit_resolves_every_waiter(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, fsync=True, segment_bytes=4096)
    spool.append(payloads(1))
    await asyncio.gather(*(spool.sync() for _ in range(20)))
    for i in range(50):  # across rotations too
        spool.append([b"z" * 300 + str(i).encode()])
        await spool.sync()
    spool.close()
