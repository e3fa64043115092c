"""Which models the welcome suggests, on several machines (recorded or made-up hardware numbers only), and how
the hub confirms them: the real HubClient over the hub fakes, the real planner on the real bundled header."""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import pytest

from engine.models.hardware import CPU, GPU, Hardware
from engine.models.hub import HubClient, HubUnavailableError
from engine.models.preview import quantization_verdicts
from engine.models.recommend import CANDIDATES, recommend, resolve_on_hub
from tests.hub_fakes import FakeApi, FakeHub, QuietServer, hub_handler

PROFILES = Path(__file__).resolve().parents[2] / "data" / "hardware"
GB = 10**9
GiB = 1024**3


def profile(name: str) -> Hardware:
    return Hardware.load(PROFILES / f"{name}.json")


def machine(ram_gib: float, cores: int, gpu_gib: float = 0) -> Hardware:
    gpus = [GPU("Some GPU", "cuda", int(gpu_gib * GiB), int(gpu_gib * GiB * 0.95))] if gpu_gib else []
    cpu = CPU(cores_physical=cores, cores_logical=2 * cores)
    return Hardware(cpu, int(ram_gib * GiB), int(ram_gib * 0.7 * GiB), gpus)


def names(recommendations) -> list[str]:
    return [r.candidate.name for r in recommendations.picks]


@pytest.mark.parametrize(
    "hardware",
    [
        profile("no_gpu_16gb"),
        profile("rtx4060_8gb"),
        profile("rtx4090_24gb"),
        profile("m2_pro_32gb_unified"),
        profile("a100_80gb"),
        machine(8, 4),
        machine(64, 16),
    ],
    ids=["laptop-16gb", "rtx4060", "rtx4090", "m2-pro", "a100", "8gb-4-cores", "64gb-cpu"],
)
def test_every_machine_gets_two_or_three_picks_that_fit_with_the_largest_comfortable_one_first(hardware):
    found = recommend(hardware, disk_free=500 * GB)
    assert 2 <= len(found.picks) <= 3 and found.default == 0
    assert all(r.plan.verdict != "wont_fit" for r in found.picks)
    default = found.picks[0]
    assert default.comfortable
    # Nothing comfortable is larger than the default.
    for candidate in CANDIDATES:
        pick = recommend(hardware, 500 * GB, candidates=(candidate,)).picks
        if pick and pick[0].comfortable:
            assert candidate.params_b <= default.candidate.params_b, candidate.name
    # The others are clearly smaller, for a faster answer.
    sizes = [r.candidate.params_b for r in found.picks]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


def test_the_default_grows_with_the_machine():
    laptop = recommend(profile("no_gpu_16gb"), 500 * GB).picks[0]
    gaming = recommend(profile("rtx4060_8gb"), 500 * GB).picks[0]
    workstation = recommend(profile("rtx4090_24gb"), 500 * GB).picks[0]
    assert laptop.candidate.params_b < gaming.candidate.params_b < workstation.candidate.params_b
    assert laptop.plan.verdict == "cpu_only" and laptop.candidate.size_bytes < 3 * GB
    assert workstation.plan.verdict == "full_gpu"


def test_on_an_8gb_card_a_model_that_fits_only_partly_is_said_so_and_not_the_default():
    card = profile("rtx4060_8gb")
    (gemma_12b,) = [c for c in CANDIDATES if c.name == "Gemma 3 12B"]
    (alone,) = recommend(card, 500 * GB, candidates=(gemma_12b,)).picks
    assert alone.fit == "fits partly on the GPU" and alone.plan.summary.startswith("Partial offload")
    assert not alone.comfortable
    default = recommend(card, 500 * GB).picks[0]
    assert default.fit == "fits on the GPU" and default.candidate.params_b < gemma_12b.params_b


def test_a_cpu_only_machine_with_much_ram_gets_the_mixture_of_experts_model():
    """30B parameters, 3B read per token: fast enough on 16 cores, when 64 GB hold it."""
    default = recommend(machine(64, 16), 500 * GB).picks[0]
    assert default.candidate.active_params_b and default.plan.verdict == "cpu_only"


def test_a_small_disk_leaves_out_the_models_it_cannot_hold_and_says_so():
    found = recommend(profile("rtx4090_24gb"), disk_free=6 * GB)
    assert found.picks and all(r.candidate.size_bytes + 2 * GiB <= 6 * GB for r in found.picks)
    assert "not on the disk (6.0 GB free)" in found.note


def test_a_machine_too_small_for_any_gets_none_and_keeps_the_bundled_model():
    found = recommend(machine(2, 2), 500 * GB)
    assert found.picks == () and found.default == -1
    assert "bundled model stays in use" in found.note


def test_a_tight_machine_still_gets_small_picks_with_a_warning():
    found = recommend(machine(4, 2), 500 * GB)
    assert found.picks and all(r.candidate.params_b < 2 for r in found.picks)
    assert "slower" in found.note


# The hub's part --------------------------------------------------------------------------------------------


@pytest.fixture()
def fake_hub(model_path):
    """Every candidate repository holds one Q4_K_M file: the bundled GGUF's bytes (its header is real)."""
    data = Path(model_path).read_bytes()
    commit = "0123456789abcdef0123456789abcdef01234567"
    hub = FakeHub({f"/{c.repo_id}/resolve/{commit}/model-Q4_K_M.gguf": data for c in CANDIDATES})
    server = QuietServer(("127.0.0.1", 0), hub_handler(hub))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    sha = hashlib.sha256(data).hexdigest()
    siblings = [
        {"rfilename": name, "size": size, "lfs": {"size": size, "sha256": sha, "pointerSize": 134}}
        for name, size in (("model-Q4_K_M.gguf", len(data)), ("model-Q8_0.gguf", 2 * len(data)))
    ]
    api = FakeApi(info={"id": "org/model-GGUF", "sha": commit, "siblings": siblings})
    yield HubClient(endpoint=f"http://127.0.0.1:{server.server_address[1]}", api=api), api
    server.shutdown()
    server.server_close()


def test_the_hub_confirms_each_pick_with_its_file_and_the_verdict_from_its_header(fake_hub):
    client, api = fake_hub
    hardware = profile("rtx4060_8gb")
    picks = recommend(hardware, 500 * GB).picks
    confirmed = resolve_on_hub(
        picks, client.quantizations, lambda quants: quantization_verdicts(quants, hardware, 4096)
    )
    assert [p.recommendation for p in confirmed] == list(picks)
    assert all(p.quant is not None and p.quant.quant == "Q4_K_M" and p.problem is None for p in confirmed)
    assert all(p.plan is not None and p.plan.verdict == "full_gpu" for p in confirmed)  # a 135M header
    assert [c[1]["repo_id"] for c in api.calls] == [p.candidate.repo_id for p in picks]


def test_a_pick_whose_file_the_hub_no_longer_has_is_marked_and_the_others_kept(fake_hub):
    client, _api = fake_hub
    picks = recommend(profile("rtx4060_8gb"), 500 * GB).picks
    changed = picks[0].candidate.repo_id
    only_f16 = FakeApi(info={"id": changed, "sha": "0" * 40, "siblings": [{"rfilename": "model-F16.gguf", "size": 9}]})

    def quantizations(repo_id):
        return (HubClient(api=only_f16) if repo_id == changed else client).quantizations(repo_id)

    confirmed = resolve_on_hub(picks, quantizations, lambda quants: {})
    assert confirmed[0].quant is None and confirmed[0].problem == f"{changed} has no Q4_K_M file any more."
    assert all(p.quant is not None and p.problem is None for p in confirmed[1:])


def test_an_unreachable_hub_is_said_at_once(monkeypatch):
    """A closed port on loopback: the real HfApi's connection is refused."""
    from huggingface_hub import HfApi

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # the tests' default is offline

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = HubClient(endpoint=endpoint, api=HfApi(endpoint=endpoint))
    picks = recommend(profile("no_gpu_16gb"), 500 * GB).picks
    with pytest.raises(HubUnavailableError, match=r"Cannot reach the Hugging Face hub"):
        resolve_on_hub(picks, client.quantizations, lambda quants: {})


def test_a_hub_that_never_answers_is_given_up_at_the_deadline(monkeypatch):
    """A server that takes connections and never answers (the real HfApi waits on it): the check ends at its
    deadline."""
    from huggingface_hub import HfApi

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are queued by the kernel, never accepted or answered
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = HubClient(endpoint=endpoint, api=HfApi(endpoint=endpoint))
        picks = recommend(profile("no_gpu_16gb"), 500 * GB).picks
        with pytest.raises(HubUnavailableError, match="did not answer within 1 seconds"):
            resolve_on_hub(picks, client.quantizations, lambda quants: {}, deadline_s=1)


def test_hub_access_switched_off_is_said_as_such():
    """HF_HUB_OFFLINE=1 (as these tests run): the real HfApi refuses before any connection."""
    from huggingface_hub import HfApi

    picks = recommend(profile("no_gpu_16gb"), 500 * GB).picks
    with pytest.raises(HubUnavailableError, match=r"offline mode"):
        resolve_on_hub(picks, HubClient(api=HfApi()).quantizations, lambda quants: {})
