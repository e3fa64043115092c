"""The event pump shared by generations and answers from documents (engine/api/pump.py): queued text is
joined into one event, and a client that has gone cancels the work once, whose last event still comes."""

from __future__ import annotations

import threading

from engine.answer import TextDelta
from engine.api.documents import DocumentRun
from engine.api.generation import Run
from engine.runtime.types import Token


class Handle:
    """What a submitted request gives back; cancelling it makes the work send its last event."""

    def __init__(self, pump):
        self.pump, self.cancels = pump, 0

    def cancel(self):
        self.cancels += 1
        threading.Thread(target=self.pump.put, args=("ended",)).start()


def pump_of(kind):
    pump = kind.__new__(kind)
    super(kind, pump).__init__()  # the queue, without submitting anything
    pump.handle = Handle(pump)
    pump.last = (*kind.last, str)  # "ended" stands for the work's last event
    return pump


def test_tokens_that_queued_up_come_as_one_and_the_run_ends_at_its_last_event():
    run = pump_of(Run)
    for text in ("Fer", "ries ", "leave"):
        run.put(Token("r1", text, 1))
    run.put("ended")
    events = list(run.events(lambda: False))
    assert events == [Token("r1", "Ferries leave", 3), "ended"] and run.handle.cancels == 0


def test_text_of_an_answer_from_documents_is_joined_the_same_way():
    run = pump_of(DocumentRun)
    run.put(TextDelta("a1", "At "))
    run.put(TextDelta("a1", "08:15"))
    run.put("ended")
    assert list(run.events(lambda: False)) == [TextDelta("a1", "At 08:15"), "ended"]


def test_a_client_that_has_gone_cancels_once_and_the_cancelled_works_last_event_still_comes():
    for kind in (Run, DocumentRun):
        run = pump_of(kind)
        assert list(run.events(lambda: True)) == ["ended"]
        assert run.handle.cancels == 1
