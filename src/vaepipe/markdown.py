"""Markdown that is safe to post: text a pull request controls shown as text, and a check
that every link and image of a report points at a file inside the report's folder.

    python -m vaepipe.markdown review/report.md    (exit 1 and one line if a link is unsafe)

CML uploads every local file an image or link names, and GitHub renders HTML and autolinks
URLs, so a param value such as `<img src=…>` or `../../.git/config` must never reach the
comment as Markdown. Standard library only: the comment workflow runs it without the
project's environment.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PLAIN = re.compile(r"[A-Za-z0-9 ,+=-]")  # characters Markdown and GitHub's autolinks leave alone
LINK = re.compile(r"\]\(([^)]*)\)")  # the target of [text](target) and ![alt](target)
SAFE_TARGET = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.png")


def escape(text) -> str:
    """Any value as literal text in Markdown (a table cell included): every character
    outside letters, digits and a few harmless marks becomes an HTML entity."""
    return "".join(char if PLAIN.fullmatch(char) else f"&#{ord(char)};" for char in str(text))


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table whose cells are escaped."""
    lines = ["| " + " | ".join(escape(cell) for cell in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def unsafe_links(text: str, folder: Path) -> list[str]:
    """What in a report could make a poster upload or link anything but its own figures:
    raw HTML, a link target that is not a plain relative path to a PNG file inside
    `folder`, or one that leaves it through a symbolic link."""
    found = [f"raw HTML {match!r}" for match in re.findall(r"<[^>]{0,40}", text)]
    found += [f"a URL {match!r}" for match in re.findall(r"(?i)\b(?:https?|ftp|file)://\S{0,40}|\bwww\.\S{0,40}", text)]
    root = folder.resolve()
    for target in LINK.findall(text):
        path = folder / target
        if not SAFE_TARGET.fullmatch(target):
            found.append(f"a link to {target[:60]!r}: only PNG files inside {folder} are allowed")
        elif not path.is_file() or path.is_symlink() or not path.resolve().is_relative_to(root):
            found.append(f"a link to {target!r}: not a file inside {folder}")
    return found


def main(argv: list[str] | None = None) -> None:
    (report,) = argv if argv is not None else sys.argv[1:]
    report = Path(report)
    try:
        text = report.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        sys.exit(f"error: {report}: cannot be read as UTF-8 text ({error.__class__.__name__})")
    found = unsafe_links(text, report.parent)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        sys.exit(f"error: {report} is not safe to post: {found[0]}{more}")
    print(f"{report}: every link is a figure inside {report.parent}")


if __name__ == "__main__":
    main()
