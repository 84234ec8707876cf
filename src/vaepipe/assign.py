"""params.yaml changed as `dvc exp run -S key=value` changes it, without its interpolation.

    python -m vaepipe.assign beta=2 d=10 'project.epochs=[0,5]'    (then `dvc exp run`)

DVC applies `-S` through Hydra and OmegaConf, which resolve every `${…}` in the file first
(`${oc.env:VAR}` included) and write the results back. Here each value is read as YAML (a
number, null, a list), the key must already exist, `${` is refused, the comments stay, and
the file is replaced only when the whole result loads (`vaepipe.params`). The cloud run
(cloud/run.sh) sets its PARAMS this way.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from vaepipe.atomic import atomic_path
from vaepipe.errors import ParamsError, printable
from vaepipe.params import INTERPOLATION, PARAMS_FILE, ParamsLoader, load_params, shown


def assign(assignments: list[str], path: str | Path = PARAMS_FILE) -> None:
    path = Path(path)
    editor = YAML()  # round trip: comments and order kept
    editor.width = 4096  # long comments stay on their line
    editor.representer.add_representer(type(None), lambda dumper, _: dumper.represent_scalar(
        "tag:yaml.org,2002:null", "null"))  # null as params.yaml writes it, not an empty value
    document = editor.load(path.read_text())
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise ParamsError(f"{shown(assignment)}: not key=value (e.g. beta=2)")
        if INTERPOLATION in assignment:
            raise ParamsError(f"{key}: {shown(text)} holds an interpolation; write the value itself")
        try:
            value = yaml.load(text, Loader=ParamsLoader) if text.strip() else ""  # noqa: S506 - a SafeLoader
        except yaml.YAMLError:
            raise ParamsError(f"{key}: {shown(text)} is not a YAML value; quote a string") from None
        *parents, leaf = key.split(".")
        node = document
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        open_ended = parents == [OPEN_SECTION]  # an architecture's options: options_of checks them
        if not isinstance(node, dict) or (leaf not in node and not open_ended):
            raise ParamsError(f"{key}: unknown key; see params.yaml for the keys")
        node[leaf] = _flow(value)
    text = io.StringIO()
    editor.dump(document, text)
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue())
        load_params(tmp)  # the whole file checked before it replaces params.yaml


OPEN_SECTION = "arch_options"  # the one section whose keys params.yaml does not list


def _flow(value):
    """Lists and mappings written on one line, as params.yaml writes them: [0, 5, 10]."""
    if isinstance(value, (list, dict)):
        inner = CommentedSeq(map(_flow, value)) if isinstance(value, list) else CommentedMap(
            {key: _flow(item) for key, item in value.items()})
        inner.fa.set_flow_style()
        return inner
    return value


def main(argv: list[str] | None = None) -> int:
    try:
        assign(sys.argv[1:] if argv is None else argv)
    except ParamsError as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
