"""Markdown that is safe to post: text a pull request controls shown as text, and a check
that every link and image of a report points at a file inside the report's folder.

    python -m vaepipe.runs.markdown review/report.md    (exit 1 and one line if a link is unsafe)

CML uploads every local file an image or link names, and GitHub renders HTML and autolinks
URLs, so a param value such as `<img src=…>` or `../../.git/config` must never reach the
comment as Markdown. Standard library only: the comment workflow runs it without the
project's environment.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

LINK = re.compile(r"\]\(([^)]*)\)")  # the target of [text](target) and ![alt](target)
SAFE_TARGET = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.png")
# what CommonMark, GitHub's autolinks, mentions, references and math can read as more than text
MARKUP = set("\\`*~[]()<>&|!#$@:")
LINK_DEFINITION = re.compile(r"[^\n]{0,30}\]\s*:[^\n]{0,30}")  # `[label]: target`, wherever it stands
REFERENCE = re.compile(r"[^\n]{0,30}\]\s*\[[^\n]{0,30}")  # `[text][label]`, `![alt][label]`


def escape(text) -> str:
    """Any value as literal text in Markdown (a table cell included) that still reads as
    plain text: only the characters that could make markup, a link, an autolink, a mention
    or math become HTML entities, and so do invisible ones (controls, line breaks). An
    underscore between letters is left (it cannot start emphasis); the dot of `www.` is
    not (it would start an autolink)."""
    text = str(text)
    out = []
    for i, char in enumerate(text):
        before, after = text[i - 1:i], text[i + 1:i + 2]
        if char in MARKUP or (char.isspace() and char != " ") or unicodedata.category(char)[0] == "C":
            out.append(f"&#{ord(char)};")
        elif char == "_" and not (before.isalnum() and after.isalnum()):
            out.append("&#95;")
        elif char == "." and text[max(i - 3, 0):i].lower() == "www":
            out.append("&#46;")
        else:
            out.append(char)
    return "".join(out)


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table whose cells are escaped."""
    lines = ["| " + " | ".join(escape(cell) for cell in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def unsafe_links(text: str, folder: Path) -> list[str]:
    """What in a report could make a poster upload or link anything but its own figures:
    raw HTML (`src=`, `href=`) or an autolink (`<…>`), a link reference definition or a
    reference-style link (CML uploads what a definition names, wherever it points), a URL,
    an inline link whose target is not a plain relative path to a PNG file inside `folder`,
    or one that leaves it through a symbolic link. The report writer emits none of these
    but its own figures' inline links."""
    found = [f"raw HTML or an autolink {match!r}" for match in re.findall(r"<[^>]{0,40}", text)]
    found += [f"a link reference definition {match!r}: CML would upload what it names"
              for match in LINK_DEFINITION.findall(text)]
    found += [f"a reference-style link {match!r}" for match in REFERENCE.findall(text)]
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
