"""DVC's plots page without a network: `dvc plots show` and `dvc plots diff` load vega,
vega-lite and vega-embed from a CDN, so offline every chart stays blank. This writes the
page template DVC reads (`.dvc/config`: plots.html_template = plots-page.html) with the three
libraries inlined, as npm installed them (pinned in package-lock.json): the page asks
nothing of anyone. `make install` runs it after `npm ci`.

    python -m vaepipe.runs.plots_page [NODE_MODULES] [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

from vaepipe.atomic import write_text

LIBRARIES = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js")
PAGE = Path(".dvc/plots-page.html")

# DVC's own page (dvc_render.html.PAGE_HTML) with the libraries in place of its {scripts}
HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
"""
TAIL = """    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page(node_modules: Path) -> str:
    scripts = []
    for library in LIBRARIES:
        code = (node_modules / library).read_text()
        if "</script" in code.lower():
            raise ValueError(f"{library} holds </script and cannot be inlined")
        scripts.append(f"    <script>/* {library}, from npm */\n{code}\n    </script>\n")
    return HEAD + "".join(scripts) + TAIL


def main(argv: list[str]) -> int:
    node_modules = Path(argv[0]) if argv else Path("node_modules")
    out = Path(argv[1]) if len(argv) > 1 else PAGE
    missing = [library for library in LIBRARIES if not (node_modules / library).is_file()]
    if missing:  # DVC's own page, which fetches the libraries from its CDN: charts only online
        print(f"warning: {node_modules / missing[0]} not found (npm ci has not run): `dvc plots` draws its "
              "charts only with a network", file=sys.stderr)
        write_text(out, HEAD + "    {scripts}\n" + TAIL)
        return 0
    write_text(out, page(node_modules))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
