"""The intake journal on a real directory: append, settle, read back, reopen after a crash, torn tails, budgets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.journal import IntakeJournal, JournalError
from app.core.messages import InMessage


def msg(i: int, size: int = 10) -> InMessage:
    return InMessage(
        body=b"x" * size,
        message_id=f"m-{i}",
        input_name="amlInput",
        custom_properties={"sequenceNumber": str(i), "ünï": "çødé"},
        content_type="application/json",
        content_encoding="utf-8",
    )


def opened(directory: Path, max_bytes: int = 10 * 1024 * 1024, segment_bytes: int = 4096) -> tuple[IntakeJournal, int, int]:
    journal = IntakeJournal(directory, max_bytes, segment_bytes=segment_bytes)
    unsettled, first = journal.open()
    return journal, unsettled, first


def test_inputs_come_back_whole_and_in_order(tmp_path: Path) -> None:
    journal, unsettled, first = opened(tmp_path)
    assert (unsettled, first) == (0, 1)
    sent = [msg(i) for i in range(50)]
    assert journal.append(sent[:20]) == [] and journal.append(sent[20:]) == []
    assert [m.journal_seq for m in sent] == list(range(1, 51))
    back = journal.read_inputs(1, 1000)
    assert [(m.message_id, m.body, m.custom_properties, m.content_type, m.journal_seq) for m in back] == [
        (m.message_id, m.body, m.custom_properties, m.content_type, m.journal_seq) for m in sent
    ]
    assert [m.message_id for m in journal.read_inputs(45, 3)] == ["m-44", "m-45", "m-46"]
    journal.close()


def test_a_crash_leaves_exactly_the_unsettled_inputs_for_the_next_run(tmp_path: Path) -> None:
    journal, *_ = opened(tmp_path)
    sent = [msg(i) for i in range(30)]
    journal.append(sent)
    journal.settle(m.journal_seq for m in sent[:10] if m.journal_seq)
    journal.flush()
    journal.settle(m.journal_seq for m in sent[10:12] if m.journal_seq)  # settled, but not yet written: replayed
    # no close(): the process dies here
    again, unsettled, first = opened(tmp_path)
    assert unsettled == 20 and first <= 11
    assert [m.message_id for m in again.read_inputs(first, 1000)] == [f"m-{i}" for i in range(10, 30)]
    more = [msg(100)]
    again.append(more)
    assert more[0].journal_seq == 31  # seqs go on across runs
    again.close()


def test_settled_segments_are_deleted_oldest_first(tmp_path: Path) -> None:
    journal, *_ = opened(tmp_path, segment_bytes=1024)
    sent = [msg(i, size=200) for i in range(40)]
    for m in sent:
        journal.append([m])
    segments = sorted(tmp_path.glob("seg-*.log"))
    assert len(segments) > 5
    journal.settle(m.journal_seq for m in sent[1:] if m.journal_seq)  # all but the very first
    journal.flush()
    assert set(segments) <= set(tmp_path.glob("seg-*.log"))  # the first pins every later segment: none deleted
    journal.settle([sent[0].journal_seq or 0])
    journal.flush()
    journal.append([msg(99)])  # rotation
    assert len(sorted(tmp_path.glob("seg-*.log"))) <= 2
    assert journal.unsettled == 1
    journal.close()
    _, unsettled, _ = opened(tmp_path)
    assert unsettled == 1


def test_a_torn_tail_is_ignored_and_what_came_before_survives(tmp_path: Path) -> None:
    journal, *_ = opened(tmp_path)
    journal.append([msg(i) for i in range(5)])
    journal.close()
    (last,) = sorted(tmp_path.glob("seg-*.log"))
    data = last.read_bytes()
    last.write_bytes(data[:-7])  # the last record cut short, as by a crash mid-write
    again, unsettled, first = opened(tmp_path)
    assert unsettled == 4
    assert [m.message_id for m in again.read_inputs(first, 100)] == ["m-0", "m-1", "m-2", "m-3"]
    again.close()


def test_past_the_budget_inputs_are_refused_not_written(tmp_path: Path) -> None:
    journal, *_ = opened(tmp_path, max_bytes=3000)
    sent = [msg(i, size=400) for i in range(10)]
    refused = journal.append(sent)
    assert 0 < len(refused) < 10 and all(m.journal_seq is None for m in refused)
    assert journal.size <= 3000 and journal.refused == len(refused)
    kept = [m for m in sent if m.journal_seq is not None]
    journal.settle(m.journal_seq for m in kept if m.journal_seq)
    journal.flush()
    journal.append([msg(99, size=10)])  # the DONE records and rotation free the space again
    assert journal.append([msg(100, size=400)]) == []
    journal.close()


def test_a_directory_that_cannot_be_written_says_what_to_do(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(JournalError, match=r"not writable .* mount a volume there \(JOURNAL_DIR\) or set INTAKE_JOURNAL=off"):
        IntakeJournal(blocked / "journal", 1 << 20)


def test_the_files_are_private(tmp_path: Path) -> None:
    journal, *_ = opened(tmp_path)
    journal.append([msg(1)])
    journal.close()
    for path in tmp_path.glob("seg-*.log"):
        assert os.stat(path).st_mode & 0o077 == 0


def test_tries_of_an_earlier_run_are_counted_per_input_across_runs(tmp_path: Path) -> None:
    journal, *_ = opened(tmp_path)
    sent = [msg(i) for i in range(4)]
    journal.append(sent)
    # no close(): the process dies; the next run replays the four and puts m-1 and m-2 into the model
    for run in range(3):
        again, unsettled, first = opened(tmp_path)
        assert unsettled == 4
        back = again.read_inputs(first, 100)
        assert [m.attempts for m in back] == [0, run, run, 0]  # TRY records written by the runs before
        new = [msg(100 + run)]
        again.append(new)
        assert new[0].attempts is None  # this run's own inputs are not replays
        again.mark_tried([back[1].journal_seq or 0, back[2].journal_seq or 0])
        again.settle([new[0].journal_seq or 0])
        again.flush()  # dies with m-1 and m-2 in the model
    final, unsettled, first = opened(tmp_path)
    assert [(m.message_id, m.attempts) for m in final.read_inputs(first, 100)] == [
        ("m-0", 0),
        ("m-1", 3),
        ("m-2", 3),
        ("m-3", 0),
    ]
    final.close()


def test_appends_from_other_threads_while_the_loop_settles_lose_nothing(tmp_path: Path) -> None:
    """The edgeHub adapter lands inputs on paho's thread while the loop settles and flushes."""
    import threading

    journal, *_ = opened(tmp_path, segment_bytes=2048)
    per_thread = 2000
    landed: list[list[InMessage]] = [[], []]

    def land(k: int) -> None:
        for i in range(per_thread):
            m = msg(k * per_thread + i)
            assert journal.append([m]) == []
            landed[k].append(m)

    threads = [threading.Thread(target=land, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    settled: set[int] = set()
    while any(t.is_alive() for t in threads) or len(settled) < 2 * per_thread // 2:
        ready = [m.journal_seq for k in range(2) for m in landed[k][: len(landed[k])] if m.journal_seq]
        batch = [s for s in ready if s % 2 == 0 and s not in settled][:50]
        journal.settle(batch)
        settled.update(batch)
        journal.flush()
        if not batch and not any(t.is_alive() for t in threads):
            break
    for t in threads:
        t.join(timeout=30)
    seqs = sorted(m.journal_seq or 0 for k in range(2) for m in landed[k])
    assert seqs == list(range(1, 2 * per_thread + 1))  # every input one seq, none twice
    # the process dies here: exactly the unsettled (odd) inputs come back
    again, unsettled, first = opened(tmp_path)
    back = again.read_inputs(first, 10 * per_thread)
    assert unsettled == len(back) == 2 * per_thread - len(settled)
    assert {m.journal_seq for m in back} == {s for s in seqs if s not in settled}
    again.close()
