"""Which questions are answered by a passage (the window then shows the top passage itself)."""

from __future__ import annotations

import pytest

from engine.rag.question_kind import asks_for_passage, top_passage

PASSAGE = [
    "Which document says when the island ferry leaves?",
    "which file mentions the budget for 2025",
    "Quick question: in which report is the deadline?",
    "What document describes the backup policy?",
    "Where does it say that tomatoes need sun?",
    "Where does the manual mention the reset button?",
    "Where is it written that we close on Fridays?",
    "Where can I find the refund rules?",
    "What is the definition of a prime number?",
    "What's the definition of latency?",
    "Define entropy.",
    "How is a 'working day' defined?",
    "Give me the definition of churn in our notes",
    "Quote the sentence about the warranty.",
    "Show me the passage on holidays",
    # German
    "Welches Dokument beschreibt die Reisekosten?",
    "In welcher Datei steht das Passwort?",
    "Wo steht, dass die Fähre um 8 Uhr fährt?",
    "Wo wird der Begriff Stetigkeit definiert?",
    "Was ist die Definition von Stetigkeit?",
    "Wie ist eine Gruppe definiert?",
    "Definition der Ableitung",
    # French
    "Quel document parle du budget ?",
    "Dans quel fichier se trouve le contrat ?",
    "Où est-il écrit que le magasin ferme le lundi ?",
    "Quelle est la définition d'un groupe ?",
    "Que dit le règlement sur les congés ?",
]

OTHER = [
    "When does the island ferry leave the pier?",
    "Hello!",
    "Say hello to me in one short sentence.",
    "Which is better, tea or coffee?",
    "Where is Paris?",
    "How do I define a function in Python?",
    "Summarize the report in three sentences.",
    "How many pages does a novel usually have?",
    "What time is it in Tokyo?",
    "Wann fährt die Fähre?",
    "Wo ist der Bahnhof?",
    "Welche Farbe hat der Himmel?",
    "Quelle heure est-il ?",
    "Où est la gare ?",
    "",
]


@pytest.mark.parametrize("question", PASSAGE)
def test_questions_whose_answer_is_a_passage(question):
    assert asks_for_passage(question)


@pytest.mark.parametrize("question", OTHER)
def test_questions_answered_in_words(question):
    assert not asks_for_passage(question)


def test_spacing_and_case_do_not_matter():
    assert asks_for_passage("  WHICH\n  DOCUMENT   says so?")


def source(number: int, supported: bool) -> dict:
    return {"number": number, "path": f"/docs/{number}.md", "quote": "Some words.", "supported": supported}


def test_the_top_passage_is_the_first_by_retrieval_rank_for_a_passage_question_or_an_unsupported_answer():
    ranked = [source(2, True), source(1, False), source(3, False)]  # as saved: supported first
    assert top_passage("Which document says so?", ranked)["number"] == 1
    assert top_passage("When does the ferry leave?", ranked) is None  # the answer rests on [2]: its sources do
    assert top_passage("Say hello.", [source(2, False), source(1, False)])["number"] == 1
    assert top_passage("Which document says so?", []) is None  # a chat answer has none
    older = [{"number": 1, "path": "/docs/1.md", "quote": "Words."}]  # saved before 'supported' existed
    assert top_passage("Hello", older) is None and top_passage("Which file?", older)["number"] == 1
