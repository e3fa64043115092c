"""The built-in tools on real files, a real web server on loopback and a real document index."""

from __future__ import annotations

import datetime
import http.server
import os
import shutil
import socket
import threading
import time
import zoneinfo
from typing import ClassVar

import pytest

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.cite import Citation
from engine.rag.library import DocumentLibrary
from engine.tools.builtin import FETCH_OFF, CurrentTime, FetchPage, ReadFile, SearchDocuments, describe_time
from engine.tools.config import ToolsConfig
from engine.tools.errors import ToolUnavailableError
from engine.tools.registry import ToolRegistry
from engine.tools.web import FetchError, check_address
from tests.conftest import PDF_ODDITIES


def run(tool, arguments, timeout_s=10.0):
    return tool.run(arguments, threading.Event(), timeout_s)


# read_file ------------------------------------------------------------------------------------------------


@pytest.fixture()
def folders(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "notes.txt").write_text("The ferry leaves at nine.\n", encoding="utf-8")
    (allowed / "sub" / "deep.md").write_text("# Deep\n\nDown here.\n", encoding="utf-8")
    (allowed / ".env").write_text("API_KEY=hunter2\n", encoding="utf-8")
    (allowed / ".git").mkdir()
    (allowed / ".git" / "config").write_text("[remote]\nurl = secret\n", encoding="utf-8")
    (allowed / "blob.bin").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n", encoding="utf-8")
    os.symlink(outside / "secret.txt", allowed / "link-out.txt")
    os.symlink(outside, allowed / "dir-out")
    os.symlink(allowed / "notes.txt", allowed / "link-in.txt")
    os.symlink(allowed / ".env", allowed / "innocent.txt")
    return allowed, outside


def reader(*folders) -> ReadFile:
    config = ToolsConfig(allowed_folders=tuple(str(f) for f in folders))
    return ReadFile(lambda: config)


def test_read_file_reads_inside_an_allowed_folder_by_relative_or_absolute_path(folders):
    allowed, _ = folders
    tool = reader(allowed)
    relative = run(tool, {"path": "notes.txt"})
    assert relative.status == "ok" and "The ferry leaves at nine." in relative.text
    absolute = run(tool, {"path": str(allowed / "sub" / "deep.md")})
    assert absolute.status == "ok" and "Down here." in absolute.text
    assert run(tool, {"path": "link-in.txt"}).status == "ok"  # a link that stays inside is fine


@pytest.mark.parametrize(
    "path",
    ["../outside/secret.txt", "link-out.txt", "dir-out/secret.txt", "/etc/passwd", "sub/../../outside/secret.txt"],
)
def test_read_file_refuses_anything_that_leaves_the_allowed_folders(folders, path):
    allowed, _ = folders
    result = run(reader(allowed), {"path": path})
    assert result.status == "error"
    assert "top secret" not in result.text and "root:" not in result.text
    assert "outside the folders allowed" in result.text or "no file" in result.text


@pytest.mark.parametrize("path", [".env", ".git/config", "innocent.txt"])
def test_read_file_refuses_hidden_files_even_inside_an_allowed_folder(folders, path):
    allowed, _ = folders
    result = run(reader(allowed), {"path": path})
    assert result.status == "error" and "hidden" in result.text
    assert "hunter2" not in result.text and "secret" not in result.text.split("'")[0]


def test_read_file_lists_a_folder_without_its_hidden_entries(folders):
    allowed, _ = folders
    result = run(reader(allowed), {"path": str(allowed)})
    assert result.status == "ok"
    assert "notes.txt" in result.text and "sub/" in result.text
    assert ".env" not in result.text and ".git" not in result.text


def test_read_file_with_no_allowed_folder_says_how_to_allow_one(folders):
    result = run(reader(), {"path": "notes.txt"})
    assert result.status == "error" and "No folder is allowed" in result.text and "Allowed folders" in result.text
    with pytest.raises(ToolUnavailableError, match="no folder is allowed"):
        ToolRegistry(ToolsConfig()).resolve(["read_file"])


def test_read_file_refuses_binary_files_and_caps_long_ones(folders):
    allowed, _ = folders
    assert "not a text file" in run(reader(allowed), {"path": "blob.bin"}).text
    (allowed / "long.txt").write_text("line of text\n" * 20000, encoding="utf-8")
    config = ToolsConfig(allowed_folders=(str(allowed),), result_max_chars=1000)
    result = run(ReadFile(lambda: config), {"path": "long.txt"})
    assert result.status == "ok" and result.truncated and len(result.text) <= 1000
    assert "[Result truncated: showing the first" in result.text


def test_read_file_parses_a_pdf_in_a_worker_process(folders):
    allowed, _ = folders
    shutil.copy(PDF_ODDITIES / "Seige_of_Vicksburg_Sample_OCR.pdf", allowed / "siege.pdf")
    config = ToolsConfig(allowed_folders=(str(allowed),), result_max_chars=100000)
    result = run(ReadFile(lambda: config), {"path": "siege.pdf"}, timeout_s=60)
    assert result.status == "ok", result.text
    assert "[page 1]" in result.text and "Vicksburg" in result.text


# fetch_page -----------------------------------------------------------------------------------------------

PAGE = b"""<html><head><title>Lighthouse log</title><style>body{color:red}</style>
<script>document.write('stolen cookies')</script></head>
<body><h1>Evening</h1><p>The keeper climbs <b>112</b> steps.</p><img src="/pixel.png">
<script>fetch('/beacon')</script></body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).paths.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/page")
            self.end_headers()
        elif self.path == "/page":
            self._send(PAGE, "text/html; charset=utf-8")
        elif self.path == "/big":
            self._send(b"<html><body><p>" + b"big " * (700 * 1024) + b"</p></body></html>", "text/html")
        elif self.path == "/image":
            self._send(b"\x89PNG\r\n\x1a\n", "image/png")
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def web():
    _Handler.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Handler.paths
    server.shutdown()
    server.server_close()


def fetcher(**settings) -> FetchPage:
    config = ToolsConfig(**settings)
    return FetchPage(lambda: config)


def test_fetch_page_is_off_by_default_and_says_so(web):
    base, paths = web
    result = run(fetcher(), {"url": base + "/page"})
    assert result.status == "error" and result.text == FETCH_OFF
    assert paths == []  # nothing went to the network
    registry = ToolRegistry(ToolsConfig())
    assert "fetch_page" not in [s.name for s in registry.available()]
    with pytest.raises(ToolUnavailableError, match="only thing in Locus that goes to the internet"):
        registry.resolve(["fetch_page"])


def test_fetch_page_refuses_this_computer_and_private_networks_unless_allowed(web):
    base, paths = web
    result = run(fetcher(fetch_enabled=True), {"url": base + "/page"})
    assert result.status == "error" and "private network" in result.text and "fetch_private" in result.text
    assert paths == []
    for address in (
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.4",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "224.0.0.1",
    ):
        with pytest.raises(FetchError):
            check_address(address, allow_private=False)
    check_address("93.184.215.14", allow_private=False)  # a public address passes


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/x", "javascript:alert(1)", "http://user:pw@127.0.0.1/", "not a url"],
)
def test_fetch_page_takes_http_and_https_only(url):
    result = run(fetcher(fetch_enabled=True, fetch_private=True), {"url": url})
    assert result.status == "error"
    assert "root:" not in result.text


def test_fetch_page_returns_the_visible_text_without_scripts_following_redirects(web):
    base, paths = web
    result = run(fetcher(fetch_enabled=True, fetch_private=True), {"url": base + "/redirect"})
    assert result.status == "ok", result.text
    assert result.text.startswith("Lighthouse log\n" + base + "/page\n")
    assert "The keeper climbs 112 steps." in result.text and "Evening" in result.text
    assert "stolen cookies" not in result.text and "beacon" not in result.text and "color:red" not in result.text
    assert "<" not in result.text
    assert paths == ["/redirect", "/page"]  # the image and the script's URL were never fetched


def test_fetch_page_caps_the_size_and_refuses_what_is_not_text(web):
    base, _ = web
    big = run(fetcher(fetch_enabled=True, fetch_private=True, result_max_chars=2000), {"url": base + "/big"})
    assert big.status == "ok" and big.truncated and len(big.text) <= 2000
    assert "only its beginning was read" in big.text
    image = run(fetcher(fetch_enabled=True, fetch_private=True), {"url": base + "/image"})
    assert image.status == "error" and "not text (image/png)" in image.text
    missing = run(fetcher(fetch_enabled=True, fetch_private=True), {"url": base + "/nothing"})
    assert missing.status == "error" and "404" in missing.text


def test_fetch_page_gives_up_at_its_time_limit():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    try:
        started = time.monotonic()
        result = run(
            fetcher(fetch_enabled=True, fetch_private=True),
            {"url": f"http://127.0.0.1:{silent.getsockname()[1]}/"},
            timeout_s=1.0,
        )
        assert result.status == "error" and "time limit" in result.text
        assert time.monotonic() - started < 10
    finally:
        silent.close()


# current_time ---------------------------------------------------------------------------------------------


def test_current_time_says_the_date_time_and_zone():
    moment = datetime.datetime(2026, 5, 14, 13, 5, 22, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert describe_time(moment) == (
        "Thursday 14 May 2026, 13:05:22, time zone CEST (UTC+02:00); ISO 8601: 2026-05-14T13:05:22+02:00"
    )
    tool = CurrentTime(lambda: ToolsConfig(), clock=lambda: moment)
    tokyo = run(tool, {"timezone": "Asia/Tokyo"})
    assert tokyo.status == "ok" and "20:05:22" in tokyo.text and "Asia/Tokyo (UTC+09:00)" in tokyo.text
    bad = run(tool, {"timezone": "Mars/Olympus"})
    assert bad.status == "error" and "not a time zone" in bad.text
    now = run(CurrentTime(lambda: ToolsConfig()), {})
    assert now.status == "ok" and str(datetime.date.today().year) in now.text


# search_documents ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("tool-search")
    docs = root / "docs"
    docs.mkdir()
    (docs / "lights.md").write_text(
        "# Lighthouses\n\nThe keeper of the north light climbs 112 steps each evening and trims the wick.\n\n"
        "# Ferries\n\nThe ferry to the island leaves at nine every morning, weather permitting.\n",
        encoding="utf-8",
    )
    library = DocumentLibrary(root / "index", bundled_embedder_path(), BUNDLED_EMBEDDER_NAME, parse_timeout_s=60)
    assert library.index([docs], "notes").wait(300).indexed == 1
    yield library, docs
    library.close()


def test_search_documents_returns_numbered_passages_with_the_citations_of_document_answers(library):
    lib, docs = library
    tool = SearchDocuments(lambda: ToolsConfig(), lambda: lib)
    result = run(tool, {"query": "How many steps does the keeper climb?"}, timeout_s=60)
    assert result.status == "ok", result.text
    assert result.text.startswith("[1] ") and "112 steps" in result.text
    assert result.citations and all(isinstance(c, Citation) for c in result.citations)
    first = result.citations[0]
    assert first.number == 1 and first.passage.path == str(docs / "lights.md") and first.quote
    assert [c.number for c in result.citations] == list(range(1, len(result.citations) + 1))
    unknown = run(tool, {"query": "steps", "collection": "nope"}, timeout_s=60)
    assert unknown.status == "error" and "no document collection 'nope'" in unknown.text and "notes" in unknown.text
    closed = run(SearchDocuments(lambda: ToolsConfig(), lambda: None), {"query": "steps"})
    assert closed.status == "error" and "not open" in closed.text
