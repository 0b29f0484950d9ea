"""RecordLog (models/records.py): growth, order, dtype checks, the checkpoint bytes."""

import numpy as np
import pytest
import torch

from mbrl_fast.models.records import RecordLog, make_record

DTYPE = np.dtype([("obs", "<f8", (3,)), ("reward", "<f8"), ("phase", "i1")])


def _records(start: int, n: int) -> np.ndarray:
    rec = np.zeros(n, DTYPE)
    rec["obs"] = np.arange(start, start + n)[:, None] + np.arange(3) / 10
    rec["reward"] = -np.arange(start, start + n)
    rec["phase"] = np.arange(start, start + n) % 4
    return rec


def test_records_keep_their_order_across_growth():
    log = RecordLog(DTYPE, capacity=2)
    log.extend(_records(0, 3))  # grows past its capacity at once
    for i in range(3, 10):
        log.add(obs=np.full(3, i), reward=-i, phase=i % 4)  # one at a time, doubling
    log.extend(_records(10, 0))
    log.extend(_records(10, 25))
    assert len(log) == 35
    got = log.records()
    np.testing.assert_array_equal(got["reward"], -np.arange(35))
    np.testing.assert_array_equal(got["phase"], np.arange(35) % 4)
    np.testing.assert_array_equal(got[:3], _records(0, 3))
    got["reward"] = 0  # a copy
    assert log.view()["reward"][5] == -5


def test_add_fills_named_fields_and_zeroes_the_rest():
    rec = RecordLog(DTYPE).add(reward=2.5)
    assert rec.shape == (1,) and rec["reward"][0] == 2.5 and not rec["obs"].any()
    np.testing.assert_array_equal(make_record(DTYPE, phase=3)["phase"], [3])


def test_bad_dtypes_are_named():
    with pytest.raises(ValueError, match="structured dtype"):
        RecordLog(np.float64)
    log = RecordLog(DTYPE)
    other = np.zeros(2, [("obs", "<f4", (3,))])
    with pytest.raises(ValueError, match="records of dtype .* this log holds"):
        log.extend(other)


def test_checkpoint_bytes_round_trip_and_reject_partial_records():
    log = RecordLog(DTYPE)
    log.extend(_records(0, 7))
    again = RecordLog(DTYPE)
    again.add(reward=99.0)  # replaced, not appended to
    again.load_tensor(log.to_tensor())
    np.testing.assert_array_equal(again.records(), log.records())
    torn = log.to_tensor()[:-3]
    with pytest.raises(ValueError, match=r"Hopper records of \d+ bytes are not whole records"):
        again.load_tensor(torn, what="Hopper records")
    np.testing.assert_array_equal(again.records(), log.records())  # nothing changed
    assert log.to_tensor().dtype == torch.uint8
