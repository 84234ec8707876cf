"""Beyond one machine (cloud/experiment.yaml, vaepipe.runs.cloud): SkyPilot's own loader accepts
the task; its set-up and run sections, run here in fresh clones standing for remote
machines (an S3 DVC remote on 127.0.0.1 that checks keys and IAM policies, a bare git
"origin"), leave an experiment a third clone pulls and shows; a machine killed mid-training is
replaced by another that resumes from the shared checkpoint store and ends with the dvc.lock of
a run never stopped. No process but the pushes holds the git token, and none holds the S3 keys."""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from support import BIN, ROOT, Mirror, dvc, free_port, git, make_repo, wait_for_server, write_dataset
from vaepipe.runs.cloud import experiment_name, grid, launch_command, split_values

TASK = ROOT / "cloud" / "experiment.yaml"
SKY_PYTHON = ROOT / ".venv-sky" / "bin" / "python"
SECRET = "ghp_" + secrets.token_hex(18)  # made here: the project copy holds this file too
CHECKPOINT_SECRET = secrets.token_hex(32)  # the launch's: every machine of a job is given it
BUCKET = "team-dvc"
# what docs/cloud.md says the machine's keys need on the DVC remote's bucket, and no more; moto
# checks a policy against the S3 operation's name where AWS checks the IAM action that covers it
# (HeadObject is s3:GetObject's, ListObjectsV2 s3:ListBucket's), so each right brings its operations
DOCUMENTED_RIGHTS = {
    "s3:GetObject": ["s3:HeadObject"],
    "s3:PutObject": ["s3:CreateMultipartUpload", "s3:UploadPart", "s3:CompleteMultipartUpload",
                     "s3:AbortMultipartUpload"],
    "s3:DeleteObject": ["s3:DeleteObjects"],
    "s3:ListBucket": ["s3:HeadBucket", "s3:ListObjects", "s3:ListObjectsV2"],
}


def test_skypilots_loader_accepts_the_task():
    if not SKY_PYTHON.exists():
        pytest.skip("SkyPilot is not installed: `make sky` (.ci/run does)")
    check = f"""
import json, sky, yaml
overridden = sky.Task.from_yaml_config(yaml.safe_load(open({str(TASK)!r})),
                                       env_overrides=[("PARAMS", "beta=2 d=10"), ("CHECKPOINT_BUCKET", "team-ckpt")])
task = overridden  # the task names no bucket: a launch without one is refused (test_secrets.py)
mount = overridden.storage_mounts["/checkpoints"]
(resources,) = task.resources
print(json.dumps({{"envs": overridden.envs, "secrets": {{k: v.get_secret_value() for k, v in task.secrets.items()}},
                  "bucket": mount.name, "mode": mount.mode.value, "setup": task.setup, "run": task.run,
                  "workdir": task.workdir, "recovery": resources.job_recovery, "cpus": resources.cpus,
                  "accelerators": resources.accelerators}}))
"""
    result = subprocess.run([str(SKY_PYTHON), "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout.strip().splitlines()[-1])
    assert task["envs"]["PARAMS"] == "beta=2 d=10" and task["envs"]["VAEPIPE_CHECKPOINTS"] == "/checkpoints"
    assert task["bucket"] == "team-ckpt" and task["mode"] == "MOUNT_CACHED"
    # credentials only as secrets, empty in the file: given at launch with --secret
    assert task["secrets"] == {"GIT_TOKEN": "", "GIT_SSH_KEY": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                               "VAEPIPE_CHECKPOINT_SECRET": ""}
    assert task["setup"].endswith("make install EXTRAS=cloud") and task["run"] == "bash cloud/run.sh"
    assert all(f"-u {name}" in task["setup"] for name in task["secrets"])  # the set-up runs with none of them
    assert task["workdir"] == "." and task["recovery"]["strategy"] == "EAGER_NEXT_REGION"
    assert task["accelerators"] is None  # a CPU unless --gpus asks


def test_a_sweep_is_every_combination_one_managed_job_each():
    assert split_values("0.5,1,[0,5],{a: 1, b: 2}") == ["0.5", "1", "[0,5]", "{a: 1, b: 2}"]
    points = grid("beta=0.5,1 project.epochs=[0,5],[0,10]")
    assert points == [["beta=0.5", "project.epochs=[0,5]"], ["beta=0.5", "project.epochs=[0,10]"],
                      ["beta=1", "project.epochs=[0,5]"], ["beta=1", "project.epochs=[0,10]"]]
    assert experiment_name(points[1]) == "beta-0.5-project.epochs-0-10"
    command = launch_command(points[0], "sky", ["--gpus", "L4:1"], env={"GIT_TOKEN": SECRET, "GIT_SSH_KEY": ""})
    assert command[:4] == ["sky", "jobs", "launch", "cloud/experiment.yaml"]
    assert "--use-spot" in command and command[-2:] == ["--gpus", "L4:1"]
    assert command[command.index("--env") + 1] == "PARAMS=beta=0.5 project.epochs=[0,5]"
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "--secret"] == ["GIT_TOKEN"]  # only those set
    assert SECRET not in " ".join(command)  # a secret's name travels, never its value


@pytest.mark.parametrize("spec, message", [
    ("beta", "'beta' is not param=value"),
    ("beta=1,,2", "has an empty value"),
    ("", "no params given"),
    ("beta=1,2,3,4,5,6,7,8,9,10 d=1,2,3,4,5,6,7,8,9,10 seed=1,2,3,4,5,6,7,8,9,10,11", "1100 points"),
])
def test_a_bad_sweep_is_one_line_and_launches_nothing(spec, message):
    result = subprocess.run([sys.executable, "-m", "vaepipe.runs.cloud", spec], capture_output=True, text=True,
                            env=dict(os.environ, SKY="/nonexistent/sky"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: sweep: ") and message in line
    assert result.stdout == ""


# --- the remote machine, simulated --------------------------------------------------------

TASK_CONFIG = yaml.safe_load(TASK.read_text())


@pytest.fixture(scope="module")
def s3():
    """An S3 server on 127.0.0.1 (moto) that checks every request's signature and its key's IAM
    policy: the team's bucket, made by an admin, and a machine's keys with the documented rights
    on that bucket only. Its first 6 requests (the two users' set-up) go unsigned."""
    import boto3

    port = free_port()
    server = subprocess.Popen([str(BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="6"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_server(server, port, "S3")
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="unsigned", aws_secret_access_key="unsigned")

    def keys(user: str, actions: list[str], resources: list[str]) -> dict:
        iam.create_user(UserName=user)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}
        iam.put_user_policy(UserName=user, PolicyName="rights", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    admin = keys("admin", ["s3:*"], ["*"])
    rights = [name for right, operations in DOCUMENTED_RIGHTS.items() for name in (right, *operations)]
    machine_keys = keys("machine", rights, [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"])
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket=BUCKET)

    def objects() -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    yield SimpleNamespace(endpoint=endpoint, keys=machine_keys, objects=objects)
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def team(tmp_path_factory, s3):
    """A bare git origin holding the project (set to read a small data set from a mirror on
    127.0.0.1) and the S3 DVC remote named in its committed .dvc/config."""
    root = tmp_path_factory.mktemp("team")
    mirror = Mirror(write_dataset(root / "data", train=4000, test=500))
    user = make_repo(root / "user", mirror.url, epochs=6, train__batch_size=16)
    dvc(user, "remote", "add", "-d", "shared", f"s3://{BUCKET}/store")
    dvc(user, "remote", "modify", "shared", "endpointurl", s3.endpoint)
    git(user, "add", ".dvc/config")
    git(user, "commit", "-q", "-m", "the team's DVC remote")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "origin.git")], check=True)
    git(user, "remote", "add", "origin", str(root / "origin.git"))
    git(user, "push", "-q", "origin", "main")
    yield root
    mirror.close()


def machine(team: Path, name: str) -> Path:
    """A fresh clone of origin, as SkyPilot syncs a checkout to a new machine. Its set-up
    finds the environments in place (this session's, lent: installing PyTorch takes minutes,
    and a test downloads nothing): the virtual environment and onnxruntime-web's node_modules."""
    folder = team / name
    git(team, "clone", "-q", str(team / "origin.git"), str(folder))
    for lent, stamp in ((BIN.parent, ".installed"), (ROOT / "node_modules", ".installed")):
        if lent.exists():
            (folder / lent.name).symlink_to(lent)
            with open(folder / ".git" / "info" / "exclude", "a") as exclude:
                exclude.write(f"/{lent.name}\n")  # a link, which /{lent.name}/ in .gitignore does not match
            (lent / stamp).touch()  # newer than the clone's pyproject.toml and package-lock.json: up to date
    return folder


def environments_under(folder: Path) -> list[tuple[bytes, bytes]]:
    """(command line, environment) of every process working in `folder`, read from /proc."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == folder.resolve():
                found.append(((proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()))
        except OSError:  # ended meanwhile, or not ours
            continue
    return found


def section_env(team: Path, s3, **envs) -> dict:
    """The task's envs (as the launch overrides them) and secrets, on a machine with no git
    identity of its own, the checkpoint bucket mounted at team/bucket and its temporary files
    in team/tmp."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GIT_", "PYTHON", "VIRTUAL_ENV", "VAEPIPE_", "AWS_"))}
    env.update(TASK_CONFIG["envs"], CHECKPOINT_BUCKET="team-ckpt")  # the launch names the bucket (required)
    env.update(TASK_CONFIG["secrets"])
    for private in ("home", "tmp"):
        (team / private).mkdir(exist_ok=True)
    env.update(HOME=str(team / "home"), TMPDIR=str(team / "tmp"), VAEPIPE_CHECKPOINTS=str(team / "bucket"),
               GIT_TOKEN=SECRET, VAEPIPE_CHECKPOINT_SECRET=CHECKPOINT_SECRET, **s3.keys, **envs)
    return env


def files_holding(folder: Path, secret: str) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and ".venv" not in path.parts
            and "node_modules" not in path.parts and secret.encode() in path.read_bytes()]


def run_section(folder: Path, section: str, env: dict, **options) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", TASK_CONFIG[section]], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **options)


def finished(process: subprocess.Popen, timeout: float = 900) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def outs_of(lock: Path) -> dict:
    return {stage: [(out["path"], out["md5"]) for out in entry.get("outs", [])]
            for stage, entry in yaml.safe_load(lock.read_text())["stages"].items()}


@pytest.mark.e2e
def test_the_task_on_remote_machines_pushes_an_experiment_and_resumes_after_preemption(team, s3):
    # one machine runs an experiment to the end: pushed, its outputs and run cache shared
    first = machine(team, "vm1")
    env = section_env(team, s3, PARAMS="beta=2", EXP_NAME="beta-2")
    finished(run_section(first, "setup", env))
    output = finished(run_section(first, "run", env))
    aws_secret = s3.keys["AWS_SECRET_ACCESS_KEY"]
    assert SECRET not in output and aws_secret not in output
    # no file holds a credential: not the checkout, the home, the temporary folder nor the bucket
    assert not [path for secret in (SECRET, aws_secret, CHECKPOINT_SECRET) for path in files_holding(team, secret)]
    shared = s3.objects()  # by the keys the server checked: outputs and run cache, in the bucket
    assert any(key.startswith("store/files/md5/") for key in shared)
    assert any(key.startswith("store/runs/") for key in shared)

    # a teammate's clone (their own keys, in the DVC config of their clone) pulls it, sees it,
    # restores its outputs, and runs nothing again
    third = machine(team, "teammate")
    for option, name in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY")):
        dvc(third, "remote", "modify", "--local", "shared", option, s3.keys[name])
    results = subprocess.run(["make", "cloud-results"], cwd=third, check=True, capture_output=True, text=True,
                             env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))
    assert "compare/: " in results.stdout  # and on the comparison page, with its figures
    page = json.loads((third / "compare" / "data.js").read_text().removeprefix("window.COMPARE = ").rstrip()[:-1])
    pulled = next(run for run in page["runs"] if run["name"] == "beta-2")
    assert pulled["metrics"]["test.loss"] > 0 and pulled["figures"]
    shown = json.loads(dvc(third, "exp", "show", "--json").stdout)
    experiments = {exp["name"]: exp for entry in shown for exp in (entry.get("experiments") or [])
                   for exp in exp["revs"]}
    assert "beta-2" in experiments
    params = experiments["beta-2"]["data"]["params"]["params.yaml"]["data"]
    assert params["beta"] == 2
    metrics = experiments["beta-2"]["data"]["metrics"]
    assert "test" in metrics["metrics/eval.json"]["data"]
    dvc(third, "exp", "apply", "beta-2")
    assert (third / "models" / "model.pt").exists()
    rerun = dvc(third, "exp", "run", "--pull", "--allow-missing", "-S", "beta=2")
    assert "Running stage" not in rerun.stdout + rerun.stderr, rerun.stdout

    # a spot machine is taken back mid-training: every process killed at once
    env = section_env(team, s3, PARAMS="beta=4", EXP_NAME="beta-4")
    preempted = machine(team, "vm2")
    finished(run_section(preempted, "setup", env))
    running = run_section(preempted, "run", env)
    bucket = team / "bucket"
    deadline = time.monotonic() + 600
    while not list(bucket.glob("train-*.pt")) and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    seen = environments_under(preempted)
    os.killpg(running.pid, signal.SIGKILL)
    running.communicate()
    # the git credential reaches the pushes only: neither DVC nor the train stage holds it (run.sh's
    # own shell, which takes it out of its environment, still shows it in /proc as it was started);
    # the S3 keys and the checkpoints' key are in no process's environment or command line: DVC
    # and the train stage are given the paths of files that hold them
    run = [(command, environ) for command, environ in seen if b"python" in command]
    assert any(b"stages/train.py" in command for command, _ in run), "the train stage was running"
    assert any(b"dvc" in command for command, _ in run), "dvc exp run was running"
    for secret in (SECRET, aws_secret, CHECKPOINT_SECRET):
        assert not [command for command, environ in run if secret.encode() in environ + command]
    assert all(b"AWS_SHARED_CREDENTIALS_FILE=" in environ for command, environ in run if b"dvc" in command)
    assert all(b"VAEPIPE_CHECKPOINT_SECRET_FILE=" in environ for command, environ in run
               if b"stages/train.py" in command)
    assert len(list(bucket.glob("train-*.pt"))) == 1, "killed after a checkpoint was saved"
    # the killed run's folder of keys, left behind (a VM taken back loses it with its disk): its own alone
    (keys,) = [folder for folder in (team / "tmp").iterdir() if (folder / "checkpoint-secret").exists()]
    assert sorted(path.name for path in keys.iterdir()) == ["aws-credentials", "checkpoint-secret"]
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert {stat.S_IMODE(path.stat().st_mode) for path in keys.iterdir()} == {0o600}

    # the job comes back on a new machine, which resumes from the bucket
    replacement = machine(team, "vm3")
    finished(run_section(replacement, "setup", env))
    output = finished(run_section(replacement, "run", env))
    resumed = [line for line in output.splitlines() if "resuming from the checkpoint of epoch" in line]
    assert len(resumed) == 1, output
    assert not list(bucket.glob("train-*.pt")), "the finished run removed its checkpoint"
    # signed and checked with the launch's secret: a key of the machine's own was never made
    assert not list((team / "home").rglob("checkpoint-secret"))

    # the same experiment run here, never stopped, with nothing shared: the same hashes
    reference = machine(team, "reference")
    dvc(reference, "exp", "run", "-S", "beta=4")
    assert outs_of(replacement / "dvc.lock") == outs_of(reference / "dvc.lock")
    assert (replacement / "dvc.lock").read_text() == (reference / "dvc.lock").read_text()


@pytest.mark.e2e
def test_a_machine_that_cannot_push_stops_before_training(team, s3):
    folder = machine(team, "no-push")
    env = section_env(team, s3, GIT_REMOTE="nowhere")
    output = finished(run_section(folder, "setup", env))
    process = run_section(folder, "run", env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2
    assert output.strip().splitlines() == [
        "error: cannot push to the git remote 'nowhere': launch with --secret GIT_TOKEN (https) or "
        "--secret GIT_SSH_KEY (ssh) holding a credential that may push there"]
    assert not (folder / "models").exists()
