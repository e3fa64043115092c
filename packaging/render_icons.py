"""Render resources/icons/locus.svg into the PNG (and .ico) icons the installers need.

    python packaging/render_icons.py [OUT_DIR]      (default: build/icons)

Writes OUT_DIR/hicolor/<N>x<N>/apps/locus.png for the freedesktop sizes,
OUT_DIR/locus.ico (Windows) and OUT_DIR/locus.iconset/ (macOS; `iconutil -c icns`
turns it into locus.icns) from the same drawing. Qt renders offscreen, so no
screen is needed; the .ico goes through Qt's own ICO writer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "locus.svg"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZE = 256  # Windows scales the one 256 px image down for the smaller sizes


def render(renderer: QSvgRenderer, size: int) -> QImage:
    """The icon drawn at size x size pixels on a transparent background."""
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def main(out: Path) -> None:
    # Qt's image plugins (ICO) need an application object, alive until the end.
    app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"render_icons: {SVG} is not a valid SVG")
    for size in SIZES:
        target = out / "hicolor" / f"{size}x{size}" / "apps" / "locus.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not render(renderer, size).save(str(target), "PNG"):
            raise SystemExit(f"render_icons: could not write {target}")
    iconset = out / "locus.iconset"
    iconset.mkdir(parents=True, exist_ok=True)
    for size in (16, 32, 128, 256, 512):  # each at 1x and 2x, as iconutil expects
        for scale, suffix in ((1, ""), (2, "@2x")):
            render(renderer, size * scale).save(str(iconset / f"icon_{size}x{size}{suffix}.png"), "PNG")
    if not render(renderer, ICO_SIZE).save(str(out / "locus.ico"), "ICO"):
        raise SystemExit(f"render_icons: Qt could not write {out / 'locus.ico'} (no ICO image plugin?)")
    print(f"icons in {out} ({app.platformName()} rendering)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "icons")
