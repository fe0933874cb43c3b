"""One sender per host (app/election.py): of the workers on one log directory, one holds the lock."""
from __future__ import annotations

import os
import subprocess
import sys

from app.election import Election
from tests.helpers import ROOT

HOLD = """
import pathlib, sys
from app.election import Election
assert Election(pathlib.Path(sys.argv[1])).won()
print("won", flush=True)
sys.stdin.read()  # hold the lock until killed
"""


def test_one_of_two_candidates_wins_and_the_other_once_it_resigns(tmp_path):
    first, second = Election(tmp_path / "spool"), Election(tmp_path / "spool")
    try:
        assert first.won()
        assert not second.won()
        assert first.won()  # asking again keeps it
        first.resign()
        assert second.won()
        assert not first.won()
        second.resign()
        second.resign()  # not held any more: nothing to let go of
        assert first.won()
    finally:
        first.resign()
        second.resign()


def test_candidates_on_two_directories_both_win(tmp_path):
    one, other = Election(tmp_path / "a"), Election(tmp_path / "b")
    try:
        assert one.won() and other.won()
    finally:
        one.resign()
        other.resign()


def test_the_lock_of_a_worker_that_dies_is_free_at_once(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    me = Election(tmp_path)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "won\n"
        assert not me.won()
        holder.kill()  # however it dies, the kernel lets go of its lock
        holder.wait(10)
        assert me.won()
    finally:
        holder.kill()
        holder.wait(10)
        me.resign()


def test_the_elected_one_notes_when_it_ran_and_what_it_counted_for_every_other_worker(tmp_path):
    elected, other = Election(tmp_path), Election(tmp_path)
    assert other.state() == (0.0, 0, 0, 0)  # nobody ran yet
    assert elected.won()
    elected.publish(123.5, 4096)
    other.won()  # a candidate that lost reads it all the same
    assert other.state() == (123.5, 4096, os.getpid(), 0)
    elected.resign()
    assert other.state() == (123.5, 4096, 0, 0)  # it said it went: not a death


def test_a_follower_hears_once_of_a_sender_it_saw_run_that_went_without_resigning(tmp_path):
    first, follower = Election(tmp_path), Election(tmp_path)
    assert first.won()
    first.publish(1.0, 10, pid=111)
    assert follower.follow(1.5, 5.0) == (1.0, 10, "")
    os.close(first.fd)  # the lock freed without a word, as at a kill -9
    second = Election(tmp_path)
    assert second.won() and second.before == 111
    second.publish(2.0, 20, pid=222)
    assert follower.follow(2.5, 5.0) == (2.0, 20, "the host's sender (pid 111) died; pid 222 took over")
    assert follower.follow(2.6, 5.0) == (2.0, 20, "")  # said once
    second.resign()  # a sender that says it goes is no death, even to a follower that never read the 0
    third = Election(tmp_path)
    assert third.won() and third.before == 0
    third.publish(3.0, 30, pid=333)
    assert follower.follow(3.5, 5.0) == (3.0, 30, "")
    third.resign()


def test_a_sender_no_follower_saw_run_is_no_death_and_a_beat_from_before_a_reboot_is_none(tmp_path):
    last_run, follower = Election(tmp_path), Election(tmp_path)
    assert last_run.won()
    last_run.publish(100.0, 10, pid=111)
    os.close(last_run.fd)  # the last run's sender, killed with the server
    assert follower.follow(200.0, 5.0) == (100.0, 10, "")  # stale when first read: not seen running
    this_run = Election(tmp_path)
    assert this_run.won() and this_run.before == 111
    this_run.publish(201.0, 20, pid=222)
    assert follower.follow(201.5, 5.0) == (201.0, 20, "")  # no death reported
    this_run.publish(9000.0, 30, pid=222)  # a monotonic beat from before a reboot, ahead of now
    assert follower.follow(202.0, 5.0) == (0.0, 0, "")
    this_run.resign()
