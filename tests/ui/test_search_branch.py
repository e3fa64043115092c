"""A search that matches a message on a branch not shown opens the conversation on that branch, scrolled to it."""

from __future__ import annotations

from PySide6.QtCore import Qt


def click_row(qtbot, window, conversation: int) -> None:
    row = window.sidebar.list.visualItemRect(window.sidebar.item_for(conversation))
    qtbot.mouseClick(window.sidebar.list.viewport(), Qt.MouseButton.LeftButton, pos=row.center())


def test_a_hit_on_another_branch_opens_that_branch(qtbot, window, services):
    history = services.history
    history.create_conversation("Groceries")
    conversation = history.create_conversation("Trip planning").id
    question = history.add_message(conversation, "user", "Where should we go in spring?")
    first = history.add_message(conversation, "assistant", "Lisbon has mild weather and trams.")
    history.add_message(conversation, "user", "And the food?")
    history.add_message(conversation, "assistant", "Pastel de nata everywhere.")
    # A second version of the first answer: the conversation now shows it (and nothing after it).
    other = history.add_message(conversation, "assistant", "Kyoto, for the cherry blossoms.", parent_id=question.id)
    assert [m.id for m in history.messages(conversation)] == [question.id, other.id]
    window.refresh_conversations()
    qtbot.waitUntil(lambda: sorted(window.sidebar.titles()) == ["Groceries", "Trip planning"])
    click_row(qtbot, window, conversation)
    qtbot.waitUntil(lambda: [w.message_id for w in window.chat.messages()] == [question.id, other.id])

    qtbot.keyClicks(window.sidebar.search, "nata")  # only on the branch not shown
    qtbot.waitUntil(lambda: bool(window.conversations.hit_messages) and window.sidebar.titles() == ["Trip planning"])
    click_row(qtbot, window, conversation)  # the conversation open already: opened again, at the hit
    qtbot.waitUntil(lambda: len(window.chat.messages()) == 4, timeout=10_000)
    assert [w.message_id for w in window.chat.messages()][:2] == [question.id, first.id]
    assert history.messages(conversation)[-1].content == "Pastel de nata everywhere."
    hit = window.chat.messages()[-1]
    qtbot.waitUntil(lambda: not hit.visibleRegion().isEmpty())  # scrolled to the message found

    window.sidebar.search.clear()  # no search: a conversation opens on the branch it shows
    qtbot.waitUntil(lambda: window.conversations.hit_messages == {} and len(window.sidebar.titles()) == 2)
