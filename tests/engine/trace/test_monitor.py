"""Monitoring on the real bundled embedder: drift between question topics, calibrated levels for
"no relevant documents" and unsupported sentences, the report, and chunk sampling from a real index."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from engine.rag.store import DocumentStore
from engine.trace.monitor import DEFAULT_RELEVANCE_LEVEL, Monitor, drift_test
from engine.trace.store import TraceStore

COOKING = {
    "templates": [
        "How long should I {cook} {food} for?",
        "What oven temperature is best to {cook} {food}?",
        "Can I use {swap} instead of {ingredient} when making {dish}?",
        "Why did my {dish} come out {fault}?",
        "What should I serve with {dish} for dinner?",
        "How do I keep {food} from getting {fault} when I {cook} it?",
        "Is it safe to freeze {dish} and {cook} it later?",
        "How much {ingredient} goes into a {dish} recipe for four people?",
    ],
    "cook": ["roast", "bake", "braise", "grill", "simmer", "fry"],
    "food": [
        "a whole chicken",
        "salmon fillets",
        "pork shoulder",
        "potatoes",
        "carrots",
        "a leg of lamb",
        "sourdough bread",
        "mushrooms",
    ],
    "swap": ["butter", "olive oil", "yogurt", "honey", "brown sugar", "cream"],
    "ingredient": ["flour", "eggs", "milk", "garlic", "salt", "sugar"],
    "dish": [
        "lasagna",
        "banana bread",
        "risotto",
        "chocolate cake",
        "beef stew",
        "pancakes",
        "apple pie",
        "tomato soup",
    ],
    "fault": ["dry", "soggy", "burnt", "too salty", "dense", "rubbery"],
}

NETWORKING = {
    "templates": [
        "How do I open port {port} in the firewall on {distro}?",
        "Why can't my {server} reach {target} after a reboot?",
        "How do I set a static IP address on {distro} with {tool}?",
        "What does {command} tell me about {thing}?",
        "How can I check why {service} stopped listening on port {port}?",
        "Which {tool} settings control {thing} on a {server}?",
        "How do I route traffic from my {server} through {target}?",
        "My {server} drops SSH connections, how do I debug {thing}?",
    ],
    "port": ["22", "80", "443", "5432", "8080", "3306"],
    "distro": ["Ubuntu Server", "Debian", "Rocky Linux", "Arch Linux", "Alpine"],
    "server": ["web server", "database host", "VPN gateway", "Raspberry Pi", "file server", "mail server"],
    "target": ["the default gateway", "the DNS resolver", "a VLAN", "the WireGuard tunnel", "the NAT router"],
    "tool": ["netplan", "NetworkManager", "systemd-networkd", "iptables", "nftables", "ufw"],
    "command": ["ip route", "ss -tulpn", "tcpdump", "traceroute", "journalctl", "dig"],
    "thing": ["the routing table", "MTU size", "packet loss", "DNS resolution", "TCP keepalive", "the subnet mask"],
    "service": ["nginx", "sshd", "PostgreSQL", "the DHCP server", "BIND"],
}

DOCUMENTS = {
    "bread": [
        "Sourdough bread rises with a starter of wild yeast and lactic bacteria instead of commercial yeast. "
        "Feed the starter with equal weights of flour and water the day before baking. "
        "A ripe starter doubles in volume and smells pleasantly sour.",
        "Mix the flour, water, salt and starter, then let the dough rest for bulk fermentation. "
        "Fold the dough every half hour to build gluten strength. "
        "Bake the loaf in a preheated Dutch oven at 250 degrees for a crisp crust.",
        "Let the baked loaf cool on a rack for at least an hour before slicing it. "
        "Cutting bread while it is hot makes the crumb gummy.",
    ],
    "astronomy": [
        "Jupiter is the largest planet in the solar system and a gas giant made mostly of hydrogen. "
        "Its Great Red Spot is a storm larger than the Earth that has raged for centuries. "
        "Jupiter has dozens of moons, and the four largest were discovered by Galileo.",
        "A light year is the distance that light travels through space in one year. "
        "The nearest star to the Sun, Proxima Centauri, is about four light years away. "
        "Telescopes collect more light than the eye and reveal faint galaxies.",
        "The Moon orbits the Earth roughly every twenty seven days. "
        "Its phases come from the changing angle between the Sun, the Earth and the Moon.",
    ],
    "gardening": [
        "Tomato plants need at least six hours of direct sunlight every day. "
        "Water them deeply at the base and avoid wetting the leaves to prevent blight. "
        "Stake or cage the plants early so that heavy fruit does not snap the stems.",
        "Compost improves the structure of clay soil and feeds earthworms. "
        "Turn the compost heap every few weeks to let air reach the microbes. "
        "Mulch keeps moisture in the soil and suppresses weeds around vegetables.",
    ],
    "tax": [
        "A tax return reports your income, deductions and credits for the year to the tax office. "
        "Keep receipts for deductible expenses such as work equipment and charitable donations. "
        "Late filing usually brings a penalty and interest on the unpaid amount.",
        "Capital gains are taxed when you sell shares for more than you paid for them. "
        "Losses on other investments can often be set against those gains to lower the tax owed.",
    ],
}


def question_pool(topic: dict, size: int, seed: int) -> list[str]:
    """``size`` distinct questions filled in from the topic's templates."""
    rng, pool = random.Random(seed), []
    while len(pool) < size:
        template = rng.choice(topic["templates"])
        fields = {k: rng.choice(v) for k, v in topic.items() if k != "templates"}
        question = template.format(**fields)
        if question not in pool:
            pool.append(question)
    return pool


@pytest.fixture(scope="module")
def pools(embedder):
    """100 embedded questions about cooking and 100 about Linux networking."""
    return (embedder.embed(question_pool(COOKING, 100, seed=1)), embedder.embed(question_pool(NETWORKING, 100, seed=2)))


@pytest.fixture()
def traces(tmp_path):
    store = TraceStore(tmp_path / "traces.sqlite3")
    yield store
    store.close()


def chunks() -> list[tuple[str, str]]:
    return [(doc, text) for doc, texts in DOCUMENTS.items() for text in texts]


def record_all(monitor: Monitor, vectors: np.ndarray) -> None:
    for v in vectors:
        monitor.record_question("q", v, 0.5)


def test_questions_moving_to_another_topic_drift(traces, pools):
    cooking, networking = pools
    monitor = Monitor(traces)
    record_all(monitor, cooking[:40])
    record_all(monitor, networking[:40])
    result = monitor.drift()
    print("cooking -> networking", result)
    assert result.drifted and result.p_value < 0.01 and result.statistic > 0
    assert (result.n_baseline, result.n_recent) == (40, 40)
    assert result.baseline_start <= result.baseline_end <= result.recent_start <= result.recent_end


def test_questions_from_the_same_topic_do_not_drift(traces, pools):
    cooking, _ = pools
    order = np.random.default_rng(3).permutation(len(cooking))
    monitor = Monitor(traces)
    record_all(monitor, cooking[order[:40]])
    record_all(monitor, cooking[order[40:80]])
    result = monitor.drift()
    print("cooking -> cooking", result)
    assert not result.drifted and result.p_value >= 0.01


def test_the_same_mix_of_topics_in_both_windows_does_not_drift(pools):
    cooking, networking = pools
    rng = np.random.default_rng(4)
    mixed = np.vstack([cooking[rng.permutation(100)[:40]], networking[rng.permutation(100)[:40]]])
    mixed = mixed[rng.permutation(80)]
    statistic, p_value = drift_test(mixed[:40], mixed[40:], seed=0)
    print("mixed -> mixed", statistic, p_value)
    assert p_value >= 0.01


def test_the_p_value_is_a_permutation_p_value(pools):
    cooking, networking = pools
    _, same = drift_test(cooking[:40], cooking[:40], permutations=200)
    assert same > 0.9  # nothing is more alike than identical windows
    _, apart = drift_test(cooking[:40], networking[:40], permutations=200)
    assert apart == pytest.approx(1 / 201)  # no permutation beats the observed split
    assert drift_test(cooking[:40], networking[:40], seed=7) == drift_test(cooking[:40], networking[:40], seed=7)


def test_calibrated_levels_flag_a_question_no_document_is_about(traces, embedder):
    monitor = Monitor(traces)
    calibration = monitor.calibrate(chunks(), embedder.embed)
    print("calibration", calibration)
    assert calibration.calibrated and calibration.n_chunks == len(chunks())
    assert 0.0 < calibration.support_level <= calibration.relevance_level < 0.6
    on_topic = [
        "How long should sourdough bread cool before I slice it?",
        "How far away is the nearest star?",
        "How many hours of sun do tomato plants need?",
        "Are capital gains on shares taxed?",
    ]
    off_topic = [
        "Who won the football world cup final?",
        "How do I change the oil in my car's engine?",
        "What is the best way to learn to play the violin?",
    ]
    vectors = embedder.embed(on_topic + off_topic + [text for _, text in chunks()])
    questions, chunk_vectors = vectors[:7], vectors[7:]
    tops = (questions @ chunk_vectors.T).max(axis=1)
    for question, vector, top in zip(on_topic + off_topic, questions, tops, strict=True):
        print("on topic" if question in on_topic else "off topic", round(float(top), 3), question)
        assert monitor.record_question(question, vector, float(top)) == (question in off_topic)
    assert monitor.record_question("nothing retrieved", questions[0], None)
    # A new Monitor on the same store reads the calibration back.
    assert Monitor(traces).calibration == calibration


def test_one_document_keeps_the_default_levels(traces, embedder):
    monitor = Monitor(traces)
    calibration = monitor.calibrate([("only", DOCUMENTS["bread"][0])], embedder.embed)
    assert not calibration.calibrated and calibration.relevance_level == DEFAULT_RELEVANCE_LEVEL


def test_an_answer_with_an_invented_sentence_is_flagged(traces, embedder):
    monitor = Monitor(traces)
    monitor.calibrate(chunks(), embedder.embed)
    passages = DOCUMENTS["bread"]
    faithful = (
        "Sourdough rises with a starter of wild yeast and lactic bacteria rather than commercial yeast [1]. "
        "Fold the dough every half hour so the gluten gets stronger [2]. "
        "Let the loaf cool for an hour, since slicing it hot makes the crumb gummy [3]."
    )
    result = monitor.record_answer(faithful, passages, embedder.embed, trace_id="t1")
    print("faithful", [round(s.similarity, 3) for s in result.sentences])
    assert not result.flagged and result.support == 1.0 and len(result.sentences) == 3
    invented = faithful + " The French national railway was electrified in the nineteen fifties [2]."
    result = monitor.record_answer(invented, passages, embedder.embed, trace_id="t2")
    print("invented", [(round(s.similarity, 3), s.supported) for s in result.sentences])
    assert result.flagged and result.unsupported == 1 and result.support == pytest.approx(0.75)
    assert [s.text for s in result.sentences if not s.supported] == [
        "The French national railway was electrified in the nineteen fifties ."
    ]
    assert monitor.record_answer(invented, [], embedder.embed).support == 0.0


def test_the_report(traces, embedder, pools):
    monitor = Monitor(traces, baseline_size=5, recent_size=5)
    monitor.calibrate(chunks(), embedder.embed)
    cooking, _ = pools
    for i, v in enumerate(cooking[:4]):
        monitor.record_question(f"question {i}", v, 0.6 if i else 0.05, trace_id=f"q{i}")
    monitor.record_answer(
        "Jupiter is the largest planet in the solar system.", DOCUMENTS["astronomy"], embedder.embed, trace_id="a1"
    )
    monitor.record_answer(
        "Octopuses have three hearts and blue blood.", DOCUMENTS["astronomy"], embedder.embed, trace_id="a2"
    )
    report = monitor.report()
    print(report.drift_note)
    assert report.drift is None and "needs 10" in report.drift_note and "has 4" in report.drift_note
    assert report.questions == 4 and report.calibration == monitor.calibration
    assert [(q.trace_id, q.question, q.top_similarity) for q in report.no_relevant] == [("q0", "question 0", 0.05)]
    assert [s for _, s in report.top_scores] == [0.05, 0.6, 0.6, 0.6]
    assert report.answers_checked == 2
    assert [(a.trace_id, a.unsupported, a.support) for a in report.unsupported] == [
        ("a2", ("Octopuses have three hearts and blue blood.",), 0.0)
    ]
    cut = time.time()
    for v in cooking[4:10]:
        monitor.record_question("more", v, 0.6)
    report = monitor.report(since=cut)
    assert report.drift is not None and report.questions == 6 and "No drift" in report.drift_note
    assert report.no_relevant == () and report.answers_checked == 0


def test_sample_chunks_spreads_over_documents(tmp_path):
    store = DocumentStore(tmp_path / "index", "test-embedder", 4)
    for doc, n in (("a", 6), ("b", 2), ("c", 4)):
        store.replace_chunks(
            doc,
            [
                {
                    "chunk_id": f"{doc}-{i}",
                    "doc_id": doc,
                    "collection": "default",
                    "path": f"/{doc}",
                    "title": doc,
                    "kind": "text",
                    "chunk_index": i,
                    "text": f"{doc} text {i}",
                    "n_tokens": 3,
                    "page": None,
                    "line_start": None,
                    "line_end": None,
                    "heading": None,
                    "vector": [0.5, 0.5, 0.5, 0.5],
                }
                for i in range(n)
            ],
        )
    sample = store.sample_chunks(6, seed=1)
    assert len(sample) == 6 and sorted(d for d, _ in sample) == ["a", "a", "b", "b", "c", "c"]
    assert all(text.startswith(doc) for doc, text in sample)
    assert store.sample_chunks(6, seed=1) == sample and store.sample_chunks(6, seed=2) != sample
    assert len(store.sample_chunks(100)) == 12 and store.sample_chunks(0) == []
