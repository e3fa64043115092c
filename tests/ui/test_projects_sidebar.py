"""The sidebar with many projects (an import can make hundreds) groups its rows in one pass, and deleting a
project with its conversations deletes only those the user confirmed. The real window and history store."""

from __future__ import annotations

import dataclasses

from engine.history.models import Conversation
from engine.history.projects import Projects


class Counted(Conversation):
    """A conversation row that counts how often the sidebar reads which project it is in."""

    reads = 0

    def __getattribute__(self, name: str):
        if name == "project_id":
            Counted.reads += 1
        return super().__getattribute__(name)


def test_many_projects_are_grouped_in_one_pass_over_the_conversations(qtbot, window, services):
    history, projects = services.history, Projects(services.history)
    made = []
    for n in range(150):
        project = projects.create(f"Imported {n:03d}")
        conversation = history.create_conversation(f"Chat {n:03d}")
        made.append(projects.move(conversation.id, project.id))
    loose = history.create_conversation("Loose")
    rows = [Counted(**{f.name: getattr(c, f.name) for f in dataclasses.fields(c)}) for c in [*made, loose]]
    sidebar = window.sidebar
    sidebar.set_projects(projects.all())
    Counted.reads = 0

    sidebar.set_conversations(rows, None)

    assert Counted.reads <= 3 * len(rows)  # not once per project and row (150 x 151 reads)
    outline = sidebar.outline()
    expected = [
        row for n in range(150) for row in (("project", f"Imported {n:03d}"), ("conversation", f"Chat {n:03d}"))
    ]
    assert outline == [*expected, ("conversation", "Loose")]
    assert sidebar.project_item(made[7].project_id).text() == "Imported 007  (1)"


def test_deleting_a_project_keeps_a_conversation_added_after_the_question(qtbot, window, services):
    history, projects = services.history, Projects(services.history)
    project = projects.create("Old work")
    gone = history.create_conversation("Secret plan").id
    history.add_message(gone, "user", "the password is swordfish")
    projects.move(gone, project.id)
    window.refresh_conversations()
    qtbot.waitUntil(lambda: ("conversation", "Secret plan") in window.sidebar.outline(), timeout=10_000)
    box = window.projects.ask_delete(project, projects.conversation_ids(project.id))
    box.show()
    # While the question is open, another conversation is put in the project (a drag, the CLI, an import).
    added = history.create_conversation("Added meanwhile").id
    projects.move(added, project.id)

    box.findChild(type(box.buttons()[0]), "deleteProjectAll").click()

    qtbot.waitUntil(lambda: ("project", "Old work") not in window.sidebar.outline(), timeout=10_000)
    qtbot.waitUntil(lambda: ("conversation", "Added meanwhile") in window.sidebar.outline(), timeout=10_000)
    assert [c.id for c in history.conversations()] == [added] and history.search("swordfish") == []
    assert history.conversation(added).project_id is None  # kept, out of the deleted project
