#!/usr/bin/env bash
# The run section of cloud/experiment.yaml, on the remote machine in the synced checkout:
# one experiment with $PARAMS, pushed to $GIT_REMOTE (`dvc exp push`, with its outputs) and
# its run cache to the DVC remote (`make share`). Training checkpoints to $VAEPIPE_CHECKPOINTS,
# so a run started again on a new machine (a spot VM taken back) resumes where it stopped.
# Credentials arrive as environment variables (SkyPilot secrets): never echoed, never written
# into the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

# experiments are commits: a machine with no git identity gets one that says where it ran
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-$(git config user.name || echo "vaepipe cloud run")}"
export GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-$(git config user.email || echo "vaepipe@localhost")}"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"

# push access: a deploy key for an ssh remote, a token for an https one (read by git from the
# environment when it asks, so it is in no URL, file or log)
if [ -n "${GIT_SSH_KEY:-}" ]; then
  key="$(mktemp)"
  trap 'rm -f "$key"' EXIT
  printf '%s\n' "$GIT_SSH_KEY" >"$key"
  export GIT_SSH_COMMAND="ssh -i $key -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new"
fi
if [ -n "${GIT_TOKEN:-}" ]; then
  # shellcheck disable=SC2016  # $GIT_TOKEN is expanded by git's shell, when it asks
  export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=credential.helper \
    GIT_CONFIG_VALUE_0='!f() { echo username=x-access-token; echo "password=$GIT_TOKEN"; }; f'
fi
# before an hour of training, not after it: can this machine push to the remote?
if ! git push --dry-run --quiet "${GIT_REMOTE:=origin}" HEAD:refs/exps/vaepipe-push-check 2>/dev/null; then
  echo "error: cannot push to the git remote '$GIT_REMOTE': launch with --secret GIT_TOKEN (https) or" \
    "--secret GIT_SSH_KEY (ssh) holding a credential that may push there" >&2
  exit 2
fi

assignments=()
set -f  # PARAMS' words are values: never globbed
for assignment in ${PARAMS:-}; do assignments+=(-S "$assignment"); done
set +f

dvc exp run --pull --allow-missing ${EXP_NAME:+--name "$EXP_NAME"} "${assignments[@]}"
dvc exp push "$GIT_REMOTE"
make share
