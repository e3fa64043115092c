"""Settings › Documents: pointing Locus at an embedding server, its key going to the real keyring."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QLineEdit, QSpinBox

from app.embeddings import remote_embedder
from app.paths import resolve_paths
from app.secrets import Secrets, stored_names_file
from app.services import build_services
from tests.engine.rag.embed_servers import LoopbackServer, vectors_reply
from ui.main_window import MainWindow
from ui.ops import wait_for_background
from ui.settings_dialog import SettingsDialog
from ui.settings_flow import edit_settings

KEY = "sk-embeddings-0123456789abcdef"


def test_the_documents_page_sets_an_embedding_server_and_keeps_its_key_in_the_keyring(
    qtbot, locus_home, secret_service, tmp_path
):
    server = LoopbackServer(lambda r: vectors_reply("BAAI/bge-m3", [[0.6, 0.8] for _ in r["json"]["input"]]))
    paths = resolve_paths()
    services = build_services(paths, secrets=Secrets(backend=secret_service, index_path=stored_names_file(paths)))
    window = MainWindow(services, "test")
    qtbot.addWidget(window)
    seen: dict = {}

    def fill_in() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, SettingsDialog)
        seen["note"] = dialog.notes["documents"].text()
        dialog.editors["documents.embedding_server"].setText(server.url)
        dialog.editors["documents.embedding_server_model"].setText("BAAI/bge-m3")
        batch = dialog.editors["documents.embedding_batch_size"]
        assert isinstance(batch, QSpinBox)
        batch.setValue(16)
        key = dialog.tokens["embedding_api_key"]
        assert key.echoMode() == QLineEdit.EchoMode.Password  # the key is never shown
        qtbot.keyClicks(key, KEY)
        form = dialog.forms["documents"]
        model_row = form.getWidgetPosition(dialog.editors["documents.embedding_server_model"])[0]
        seen["key row follows the model"] = form.getWidgetPosition(key)[0] == model_row + 1
        dialog.editors["documents.embedding_server"].parentWidget().grab().save(str(tmp_path / "documents.png"))
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()

    try:
        with qtbot.waitSignal(window.settingsApplied, timeout=30_000):
            QTimer.singleShot(0, fill_in)
            edit_settings(window)
        assert "decided when the embedding model first starts" in seen["note"]
        assert seen["key row follows the model"]
        documents = services.settings.documents
        assert (documents.embedding_server, documents.embedding_server_model, documents.embedding_batch_size) == (
            server.url,
            "BAAI/bge-m3",
            16,
        )
        assert Secrets(backend=secret_service).get("embedding_api_key") == KEY  # in the real keyring
        assert KEY not in paths.config_file.read_text(encoding="utf-8")  # and nowhere in the settings file
        # What the documents will embed with: that server, that model, that key, 16 passages a request.
        embedder = remote_embedder(services.settings, services.secrets)
        try:
            assert embedder.embed([f"passage {i}" for i in range(20)]).shape == (20, 2)
        finally:
            embedder.close()
        assert [len(r["json"]["input"]) for r in server.requests] == [16, 4]
        assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
        # Opened again, the page says where embeddings come from and leaves the stored key alone.
        again = SettingsDialog(services.setting_specs, services.setting_values())
        qtbot.addWidget(again)
        again.show_embedding_device(None, server=services.settings.documents.embedding_server)
        assert again.notes["documents"].text() == f"Embeddings come from the server at {server.url}"
    finally:
        window.close()
        wait_for_background()
        services.close()
        server.stop()
