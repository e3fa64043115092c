"""Translation: Markdown cut into prose and kept spans, language names and detection, and real translations."""

from __future__ import annotations

import pytest

from engine.answer import Progress, TextDelta
from engine.errors import InvalidRequestError
from engine.runtime.types import SamplingParams
from engine.tasks import translate as translate_module
from engine.tasks.translate import LANGUAGES, check_languages, detect_language, language_name, translate
from engine.tasks.translate_segment import checked, mask, segment

FENCED_PY = "```python\ndef add(a, b):\n\n    # the blank line above belongs to the code\n    return a + b\n```\n"
FENCED_SH = "~~~bash\ncurl -fsSL https://get.example.com/install.sh | sh\n~~~\n"
URLS = (
    "https://example.com/guide?a=1&b=2",
    "https://docs.example.org/wiki/Tea_(drink)",
    "https://example.net/cat.png",
    "http://www.example.org/start",
    "https://example.com/ref",
)

DOCUMENT = f"""---
title: Tea notes
---
# Making tea ##

The kettle is hot. Read [the tea guide]({URLS[0]}) and run `brew --strong` before you drink it.
See also {URLS[1]}. It tells the story of the drink.

{FENCED_PY}
- The cat sleeps near the warm stove.
- [x] The dog waits by the door
  for the evening walk.
1. Pour the water slowly.

> The garden is quiet in the morning
> and the birds sing.

| Name | What it is |
|------|------------|
| `green` | A light tea with a fresh taste \\| sometimes sweet |

    indented_code = True

<div align="center">
Some HTML that stays as it is.
</div>

{FENCED_SH}
Here is a picture: ![a cup of tea]({URLS[2]}). Write to tea@example.com or visit <{URLS[3]}>.
Use &nbsp; <b>carefully</b> and keep ⟦this⟧ as written.

[ref]: {URLS[4]}
The [reference link][ref] and `` code with ` a tick `` end the text.
"""


def prose(text: str) -> list[tuple[str, str]]:
    return [(p.kind, p.source) for p in segment(text) if p.prose]


def test_segments_join_back_to_the_text_and_hold_only_prose():
    pieces = segment(DOCUMENT)
    assert "".join(p.text for p in pieces) == DOCUMENT
    assert prose(DOCUMENT) == [
        ("line", "Making tea"),
        (
            "paragraph",
            f"The kettle is hot. Read [the tea guide]({URLS[0]}) and run `brew --strong` before you "
            f"drink it.\nSee also {URLS[1]}. It tells the story of the drink.",
        ),
        ("paragraph", "The cat sleeps near the warm stove."),
        ("paragraph", "The dog waits by the door\nfor the evening walk."),
        ("paragraph", "Pour the water slowly."),
        ("paragraph", "The garden is quiet in the morning\nand the birds sing."),
        ("cell", "Name"),
        ("cell", "What it is"),
        ("cell", "`green`"),
        ("cell", "A light tea with a fresh taste \\| sometimes sweet"),
        (
            "paragraph",
            f"Here is a picture: ![a cup of tea]({URLS[2]}). Write to tea@example.com or visit "
            f"<{URLS[3]}>.\nUse &nbsp; <b>carefully</b> and keep ⟦this⟧ as written.",
        ),
        ("paragraph", "The [reference link][ref] and `` code with ` a tick `` end the text."),
    ]
    copied = "".join(p.text for p in pieces if not p.prose)
    for kept in (
        FENCED_PY,
        FENCED_SH,
        "---\ntitle: Tea notes\n---\n# ",
        " ##\n",
        "    indented_code = True\n",
        '<div align="center">\nSome HTML that stays as it is.\n</div>\n',
        f"[ref]: {URLS[4]}\n",
        "|------|------------|\n",
        "- [x] ",
        "\n1. ",
        "\n> ",
    ):
        assert kept in copied


def test_code_fenced_inside_quotes_and_list_items_is_copied():
    text = "> Run this:\n> ```sh\n> make all\n>\n> - not an item\n> ```\n> Then rest.\n\n1. ```js\n   go()\n   ```\n"
    assert "".join(p.text for p in segment(text)) == text
    assert prose(text) == [("paragraph", "Run this:"), ("paragraph", "Then rest.")]


def test_the_model_sees_placeholders_for_every_protected_span():
    for piece in segment(DOCUMENT):
        if not piece.prose:
            continue
        masked = mask(piece.source)
        for span in (
            *URLS,
            "`brew --strong`",
            "`green`",
            "tea@example.com",
            "&nbsp;",
            "<b>",
            "</b>",
            "`` code with ` a tick ``",
        ):
            assert span not in masked.text
        assert masked.restore(masked.text) == piece.source
    link = mask(f'Read [the tea guide]({URLS[0]} "Guide") and run `x`, then ![alt](img.png) and [a][ref].')
    assert link.text == "Read [the tea guide](⟦1⟧) and run ⟦2⟧, then ![alt](⟦3⟧) and [a][⟦4⟧]."
    assert link.spans == (f'{URLS[0]} "Guide"', "`x`", "img.png", "ref")
    bare = mask(f"Wiki: {URLS[1]}. Mail me@example.com, (see {URLS[3]}), not a [plain] bracket.")
    assert bare.spans == (URLS[1], "me@example.com", URLS[3])
    assert bare.text.endswith("(see ⟦3⟧), not a [plain] bracket.")


def test_a_translation_that_loses_doubles_or_breaks_a_placeholder_is_refused():
    masked = mask("Read [the guide](https://example.com) and run `make`.")
    sent = masked.text  # "Read [the guide](⟦1⟧) and run ⟦2⟧."
    assert checked("Lisez [le guide](⟦1⟧) et lancez ⟦ 2 ⟧.", sent, masked) == "Lisez [le guide](⟦1⟧) et lancez ⟦2⟧."
    assert (
        masked.restore("Lisez [le guide](⟦1⟧) et lancez ⟦2⟧.")
        == "Lisez [le guide](https://example.com) et lancez `make`."
    )
    for bad in (
        "Lisez le guide et lancez ⟦2⟧.",
        "Lisez [le guide](⟦1⟧) ⟦2⟧ ⟦2⟧.",
        "Lisez ⟦1⟧ ⟦2⟧ ⟦3⟧.",
        "Lisez le guide ⟦1⟧ et ⟦2⟧.",
        "Lisez [le guide](⟦1⟧) et ⟦2.",
        "",
    ):
        assert checked(bad, sent, masked) is None, bad


@pytest.mark.parametrize(
    "language, text",
    [
        ("English", "The weather is nice today and we are going to the beach with the children."),
        ("French", "Il fait beau aujourd'hui et nous allons à la plage avec les enfants."),
        ("German", "Das Wetter ist heute schön und wir gehen mit den Kindern an den Strand."),
        ("Spanish", "Hoy hace buen tiempo y vamos a la playa con los niños."),
        ("Italian", "Oggi il tempo è bello e andiamo al mare con i bambini."),
        ("Portuguese", "O tempo está bom hoje e vamos à praia com as crianças."),
        ("Dutch", "Het weer is mooi vandaag en we gaan met de kinderen naar het strand."),
        ("Russian", "Сегодня хорошая погода, и мы идём на пляж с детьми."),
        ("Ukrainian", "Сьогодні гарна погода, і ми йдемо на пляж з дітьми."),
        ("Chinese", "今天天气很好，我们和孩子们一起去海滩。"),
        ("Japanese", "今日は天気が良いので、子供たちと一緒にビーチに行きます。"),
        ("Korean", "오늘은 날씨가 좋아서 아이들과 함께 해변에 갑니다."),
        ("Arabic", "الطقس جميل اليوم ونحن ذاهبون إلى الشاطئ مع الأطفال."),
        ("Greek", "Ο καιρός είναι ωραίος σήμερα και πάμε στην παραλία με τα παιδιά."),
        ("Hindi", "आज मौसम अच्छा है और हम बच्चों के साथ समुद्र तट पर जा रहे हैं।"),
    ],
)
def test_detects_the_language_of_a_sentence(language, text):
    assert detect_language(text) == language


def test_detection_says_none_when_there_is_nothing_to_go_on():
    assert detect_language("x = 1") is None
    assert detect_language("12 34 !!") is None


def test_language_names_and_their_errors():
    assert LANGUAGES[0] == "English" and len(LANGUAGES) >= 20
    assert language_name("fr") == language_name(" FRENCH ") == "French"
    with pytest.raises(InvalidRequestError, match="'Frnch' is not a language") as info:
        language_name("Frnch")
    assert "Did you mean French?" in info.value.hint and "Vietnamese" in info.value.hint
    with pytest.raises(InvalidRequestError, match="both German"):
        check_languages("Hallo Welt", "German", "de")
    with pytest.raises(InvalidRequestError, match="already seems to be in English"):
        check_languages("The cat is on the table and it is asleep.", "English")
    with pytest.raises(InvalidRequestError, match="no text"):
        check_languages("  \n", "French")
    assert check_languages("```\ncode only\n```\nThe dog is in the garden.", "fr") == ("French", "English")


def run_translation(start, runtime, templates, text, target, source=None, seed=7):
    handle = start(
        lambda ctx: translate(ctx, text, target, source),
        runtime,
        templates,
        SamplingParams(seed=seed),
        name="translate",
    )
    events = list(handle.events())
    return events, events[-1]


SHORT_DOCUMENT = f"""# Tea

Read [the tea guide]({URLS[0]}) and run `brew --strong` first.

{FENCED_PY}
The cat sleeps. See {URLS[1]} for more.

{FENCED_SH}
- Visit <{URLS[3]}> today.
"""


def test_a_real_translation_keeps_every_code_block_and_url_byte_identical(runtime, templates, monkeypatch, start):
    # Two units a request, so that these four come back in two batches, streamed one after the other.
    monkeypatch.setattr(translate_module, "MAX_BATCH_UNITS", 2)
    events, done = run_translation(start, runtime, templates, SHORT_DOCUMENT, "French")
    assert done.complete, done
    out = done.text
    for kept in (FENCED_PY, FENCED_SH, URLS[0], URLS[1], URLS[3], "`brew --strong`"):
        assert out.count(kept) == SHORT_DOCUMENT.count(kept), kept
    assert out.startswith("# ") and "\n- " in out and out.endswith("\n")
    assert done.stats.details["source_language"] == "English" and done.stats.details["units"] == 4
    assert done.stats.details["kept_original"] < 4, "the model's every translation was refused"
    # Streamed in order: the pieces add up to the result, and the first came before the last progress step.
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == out
    progress = [(e.done, e.total) for e in events if isinstance(e, Progress)]
    assert progress == [(0, 4), (2, 4), (4, 4)]
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert first_text < max(i for i, e in enumerate(events) if isinstance(e, Progress))


def test_paragraphs_whose_placeholders_the_model_loses_are_kept_as_written(runtime, templates, start):
    # A prompt that never shows the model the text: any placeholder it was to keep is lost.
    templates.save("translate", 'variables = ["text", "source", "target"]\nuser = "Reply with one word: hello."\n')
    text = (
        f"Run `make test` before [the release]({URLS[0]}).\n\nThe sky is blue.\n\n{FENCED_PY}\n"
        f"Mail tea@example.com today.\n"
    )
    _events, done = run_translation(start, runtime, templates, text, "Spanish", source="English")
    assert done.complete, done
    paragraphs = done.text.split("\n\n")
    assert paragraphs[0] == f"Run `make test` before [the release]({URLS[0]})."
    assert paragraphs[1] != "The sky is blue." and paragraphs[1].strip()
    assert FENCED_PY in done.text and done.text.endswith("Mail tea@example.com today.\n")
    assert done.stats.details["kept_original"] == 2 and done.stats.details["units"] == 3


def test_a_paragraph_over_the_budget_goes_in_runs_of_whole_sentences(runtime, templates, context):
    ctx = context(runtime, templates, SamplingParams())
    translator = translate_module._Translator(ctx, "French", "English")
    sentences = [f"Sentence {n} tells of the {n} cats that sleep in the warm kitchen." for n in range(200)]
    jobs = translator.jobs(3, " ".join(sentences))
    assert len(jobs) > 1 and all(ctx.count_tokens(j.text) <= translator.budget for j in jobs)
    assert " ".join(j.text for j in jobs) == " ".join(sentences) and {j.unit for j in jobs} == {3}
    assert all(j.text.endswith("kitchen.") for j in jobs)


def test_a_bad_request_fails_the_task_with_the_allowed_languages(runtime, templates, start):
    _, failed = run_translation(start, runtime, templates, "Hello there, my friend.", "Elvish")
    assert failed.failed and isinstance(failed.error, InvalidRequestError)
    assert "Choose one of: English, Arabic" in failed.error.hint
