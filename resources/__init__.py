"""Icons, style sheets, prompt templates and desktop files shipped with Locus."""

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    """The path of a file shipped in resources/."""
    return RESOURCES_DIR.joinpath(*parts)
