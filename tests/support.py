"""What the tests, benchmarks and experiments share: small IDX data sets built in code, a
fault-injecting mirror on 127.0.0.1, project copies in git repositories, real dvc and git,
the whole MNIST when it is there, Chromium's flags. (The pytest fixtures are in conftest.py.)"""

from __future__ import annotations
import contextlib
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
import time
from pathlib import Path
import numpy as np
import yaml

from vaepipe.layout import FILES, SPLITS
from vaepipe.data.download import MD5SUMS
from vaepipe.data.idx import write_idx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FASHION = Path("/usr/share/datasets/fashion-mnist")


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28×28 uint8 images whose label sets where a bright bar lies, over faint noise."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 3 + 2 * int(label)
        images[i, row:row + 3, 4:24] = rng.integers(180, 256, size=(3, 20))
    return images, labels


def write_dataset(folder: Path, *, train: int = 600, test: int = 200, seed: int = 0,
                  md5sums: bool = True) -> Path:
    """The four IDX .gz files of a small data set, with an MD5SUMS file beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        images, labels = synthetic_digits(n, seed + (split == "test"))
        images_name, labels_name = SPLITS[split]
        write_idx(folder / images_name, images)
        write_idx(folder / labels_name, labels)
    if md5sums:
        lines = [f"{hashlib.md5((folder / name).read_bytes()).hexdigest()}  {name}" for name in FILES]
        (folder / MD5SUMS).write_text("\n".join(lines) + "\n")
    return folder


def isa(device=None) -> str:
    """What a speed was measured on, printed beside every benchmark's numbers: the instruction
    set of PyTorch's CPU kernels (AVX2, AVX512, …), or the device's type ("cuda") off the CPU."""
    import torch

    if device is not None and torch.device(device).type != "cpu":
        return torch.device(device).type
    return torch.backends.cpu.get_cpu_capability()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(server: subprocess.Popen, port: int, what: str, seconds: float = 30) -> None:
    """Return once `server` accepts connections on 127.0.0.1:port; raise if it ends or never does."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {what} server did not start") from None
            time.sleep(0.2)


class Mirror:
    """An HTTP server on 127.0.0.1 serving a folder, with faults chosen per file name.

    faults maps a file name (or "*" for all) to 404, 500, "truncate" (half the promised
    body, then a closed connection), "garbage" (the right length, wrong bytes) or "slow"
    (an answer only after `slow_seconds`).
    """

    def __init__(self, folder: Path, faults: dict | None = None, slow_seconds: float = 3.0):
        self.folder, self.faults, self.slow_seconds = folder, dict(faults or {}), slow_seconds
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                mirror.requests.append(name)
                fault = mirror.faults.get(name, mirror.faults.get("*"))
                if fault == "slow":
                    time.sleep(mirror.slow_seconds)
                path = mirror.folder / name
                if fault in (404, 500) or not path.is_file():
                    self.send_error(fault if fault in (404, 500) else 404)
                    return
                body = path.read_bytes()
                if fault == "garbage":
                    body = bytes(reversed(body))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if fault == "truncate" else body)
                if fault == "truncate":
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
LOAD_AND_MEASURE = ("import resource, sys\nfrom vaepipe.api import load\nfrom vaepipe.errors import UserError\n"
                    "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
                    "try:\n    load(sys.argv[1])\nexcept UserError as error:\n    print('refused:', error)\n"
                    "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")


def load_in_fresh_process(path: Path) -> tuple[str, int, str]:
    """`api.load(path)` in a process of its own: what it printed (`refused: …` for a
    UserError), how many MB its peak memory grew by, and its stderr."""
    result = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                            env=stage_env())
    said, grown_mb = result.stdout.splitlines()
    return said, int(grown_mb), result.stderr


def deflated(archive: bytes) -> bytes:
    """A zip archive (torch.save's) with every entry compressed: a decompression bomb's form."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry.filename, source.read(entry))
    return out.getvalue()


# the ONNX files written in models/onnx checked against the model again, as the export stage
# checks them when it writes them (a tampered file fails), in a project copy
CHECK_ONNX = ("from pathlib import Path; from vaepipe.model.export import check_against_torch, parts\n"
              "from vaepipe.model.vae import load_model\n"
              "def check_files():\n"
              "    model = load_model('models/model.pt')[0]\n"
              "    return {name: check_against_torch(name, Path(f'models/onnx/{name}.onnx').read_bytes(), part)\n"
              "            for name, part in parts(model).items()}\n")


def set_params(folder: Path, **changes) -> None:
    """Change params.yaml in `folder`; keys are dotted paths written with __ (train__lr)."""
    path = folder / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def stage_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONHASHSEED", None)
    return env


# runs a script with one package made unimportable: proof that a stage runs without it
WITHOUT = ("import runpy, sys\n"
           "class Refuse:\n"
           "    def find_spec(self, name, path=None, target=None):\n"
           "        if name.partition('.')[0] == sys.argv[2]:\n"
           "            raise ImportError(f'{name} was imported')\n"
           "sys.meta_path.insert(0, Refuse())\n"
           "runpy.run_path(sys.argv[1], run_name='__main__')\n")


def run_stage(name: str, folder: Path, timeout: float = 600, without: str | None = None) -> subprocess.CompletedProcess:
    """Run stages/<name>.py of this checkout with `folder` as the project root; with
    `without`, a package whose import fails the stage."""
    script = str(ROOT / "stages" / f"{name}.py")
    command = [sys.executable, script] if without is None else [sys.executable, "-c", WITHOUT, script, without]
    return subprocess.run(command, cwd=folder, env=stage_env(), capture_output=True, text=True, timeout=timeout)


# small, fast settings for pipelines run on synthetic data
FAST = dict(epochs=2, d=4, train__batch_size=64, project__epochs=[0, 1, 2], project__points=200,
            evaluate__elbo_samples=2, evaluate__iw_samples=8, evaluate__fd_samples=500,
            generate__samples=16, generate__reconstructions=8, generate__morph__steps=6,
            classifier__epochs=1)


def project_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    # the project's code and params, not the run of record (dvc.lock, metrics/, plots/)
    return [name for name in listed if (ROOT / name).is_file() and name != "dvc.lock"
            and not name.startswith(("metrics/", "plots/"))]


def make_repo(folder: Path, mirror_url: str, *, dataset: str = "custom", fast: bool = True,
              **changes) -> Path:
    """A git repository holding a copy of the project, set to read `dataset` from a mirror,
    with the small FAST settings unless `fast` is false."""
    for name in project_files():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, folder / name)
    set_params(folder, data__dataset=dataset, data__mirror=mirror_url, **{**(FAST if fast else {}), **changes})
    page = ROOT / ".dvc" / "plots-page.html"  # DVC's plots page (make install), git-ignored
    if page.exists():
        shutil.copy2(page, folder / ".dvc" / page.name)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "config", "user.name", "test")
    git(folder, "config", "user.email", "test@example.com")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "project copy")
    return folder


def committed_run(folder: Path) -> Path:
    """A project copy in `folder` whose whole pipeline has run on a small synthetic data set,
    its outputs committed: what `dvc exp run`, `dvc plots diff` and the like start from."""
    mirror = Mirror(write_dataset(folder.parent / f"{folder.name}-data", train=300, test=100))
    try:
        repo = make_repo(folder, mirror.url)
        dvc(repo, "repro", timeout=1800)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "a run")
    finally:
        mirror.close()
    return repo


def git(folder: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    return subprocess.run(["git", *args], cwd=folder, env=env, capture_output=True, text=True,
                          check=True).stdout


def dvc(folder: Path, *args: str, check: bool = True, timeout: float = 900, stdout=subprocess.PIPE
        ) -> subprocess.CompletedProcess:
    env = stage_env()
    env.pop("PYTHONPATH")  # the stages set their own, so the copy runs its own code
    env.update(GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    result = subprocess.run([str(BIN / "dvc"), *args], cwd=folder, env=env, stdout=stdout,
                            stderr=subprocess.STDOUT if stdout is not subprocess.PIPE else subprocess.PIPE,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def find_mnist() -> Path | None:
    """The whole real MNIST: $VAEPIPE_MNIST, or `shared/data/mnist` beside the checkout."""
    candidates = [Path(os.environ["VAEPIPE_MNIST"])] if os.environ.get("VAEPIPE_MNIST") else []
    candidates += [parent / "shared" / "data" / "mnist" for parent in ROOT.parents]
    return next((folder for folder in candidates if all((folder / name).exists() for name in FILES)), None)


def parse_with_mnist(parser):
    """A script's arguments with `--mnist FOLDER` (the whole MNIST, by default the copy beside
    the checkout); exits with one line when there is none."""
    parser.add_argument("--mnist", type=Path, default=find_mnist())
    args = parser.parse_args()
    if args.mnist is None:
        sys.exit("the whole MNIST is not beside this checkout: pass --mnist FOLDER")
    return args
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def serving(folder: Path):
    """`folder` served on 127.0.0.1 as `make explore` serves it (vaepipe.explorer.serve); yields its URL."""
    from vaepipe.explorer.serve import server as local_server

    server = local_server(str(folder), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def explorer_page(browser, explorer: Path, **options):
    """The page in `explorer` served on 127.0.0.1 and loaded; its errors on `page.errors`,
    every URL it asked for on `page.requests`, where it is served on `page.served`."""
    with serving(explorer) as url:
        page = browser.new_page(**options)
        page.errors, page.requests, page.served = [], [], url
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
        page.on("request", lambda request: page.requests.append(request.url))
        try:
            page.goto(url)
            page.evaluate("explorer.ready")
            yield page
        finally:
            page.close()


def in_repo(folder: Path, code: str) -> str:
    """What `code` prints, run with the repository's own modules (its src/ on the path)."""
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env={"PYTHONPATH": str(folder / "src")},
                          capture_output=True, text=True, check=True).stdout
