#!/usr/bin/env bash
# The run section of cloud/experiment.yaml, on the remote machine in the synced checkout:
# one experiment with $PARAMS, pushed to $GIT_REMOTE (`dvc exp push`, with its outputs) and
# its run cache to the DVC remote (`make share`). Training checkpoints to $VAEPIPE_CHECKPOINTS,
# so a run started again on a new machine (a spot VM taken back) resumes where it stopped.
# Credentials arrive as environment variables (SkyPilot secrets): never echoed, never written
# into the checkout, and kept from every command but those that reach the remotes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

# experiments are commits: a machine with no git identity gets one that says where it ran
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-$(git config user.name || echo "vaepipe cloud run")}"
export GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-$(git config user.email || echo "vaepipe@localhost")}"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"

# Credentials reach only the commands that use them: taken out of the environment here, given
# back to git's pushes, and DVC's remote keys to DVC's commands, which read and write the remote.
git_token="${GIT_TOKEN:-}" git_ssh_key="${GIT_SSH_KEY:-}"
aws_key_id="${AWS_ACCESS_KEY_ID:-}" aws_secret="${AWS_SECRET_ACCESS_KEY:-}"
checkpoint_secret="${VAEPIPE_CHECKPOINT_SECRET:-}"
unset GIT_TOKEN GIT_SSH_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY VAEPIPE_CHECKPOINT_SECRET
# the keys go in files only this user may read (ssh refuses a key others may), in a folder
# removed when the run ends
private="$(mktemp -d)"
trap 'rm -rf "$private"' EXIT

# the checkpoints' signing key, for the train stage: a file the run is pointed at, so that no
# stage's environment holds it (the stages that decode your pictures included)
training=()
if [ -n "$checkpoint_secret" ]; then
  (umask 077 && printf '%s' "$checkpoint_secret" >"$private/checkpoint-secret")
  training+=("VAEPIPE_CHECKPOINT_SECRET_FILE=$private/checkpoint-secret")
else
  echo "warning: no --secret VAEPIPE_CHECKPOINT_SECRET: a machine that replaces this one cannot resume its" \
    "checkpoints and trains from epoch 0" >&2
fi
unset checkpoint_secret

# DVC's S3 keys in a credentials file that DVC's commands are pointed at: `dvc exp run --pull`
# reads the remote between stages, but its stages inherit its environment, which so holds
# the file's path, never the keys (printf is bash's own: the keys are in no command line)
remote=()
if [ -n "$aws_key_id" ]; then
  (umask 077 && printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$aws_key_id" \
    "$aws_secret" >"$private/aws-credentials")
  remote+=("AWS_SHARED_CREDENTIALS_FILE=$private/aws-credentials")
fi
unset aws_key_id aws_secret

# push access: a deploy key for an ssh remote, a token for an https one, for that host alone
# (read by git from the environment when it asks, so it is in no URL, file or log)
pushing=()
if [ -n "$git_ssh_key" ]; then
  (umask 077 && printf '%s\n' "$git_ssh_key" >"$private/ssh-key")
  pushing+=("GIT_SSH_COMMAND=ssh -i $private/ssh-key -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new")
fi
if [ -n "$git_token" ]; then
  url="$(git remote get-url "${GIT_REMOTE:=origin}" 2>/dev/null || true)"
  if [[ "$url" =~ ^https://([^/@]+@)?([^/]+) ]]; then
    # shellcheck disable=SC2016  # $GIT_TOKEN is expanded by git's shell, when it asks
    pushing+=(GIT_TOKEN="$git_token" GIT_CONFIG_COUNT=1 "GIT_CONFIG_KEY_0=credential.https://${BASH_REMATCH[2]}.helper"
      'GIT_CONFIG_VALUE_0=!f() { echo username=x-access-token; echo "password=$GIT_TOKEN"; }; f')
  elif [ -n "$url" ]; then
    echo "warning: GIT_TOKEN is given only to an https:// git remote; '${GIT_REMOTE}' is not one" >&2
  fi
fi
with_push() { env "${pushing[@]}" "${remote[@]}" "$@"; }
with_remote() { env "${remote[@]}" "$@"; }

# before an hour of training, not after it: can this machine push to the remote?
if ! with_push git push --dry-run --quiet "${GIT_REMOTE:=origin}" HEAD:refs/exps/vaepipe-push-check 2>/dev/null; then
  echo "error: cannot push to the git remote '$GIT_REMOTE': launch with --secret GIT_TOKEN (https) or" \
    "--secret GIT_SSH_KEY (ssh) holding a credential that may push there" >&2
  exit 2
fi

# PARAMS' words set params.yaml without the interpolation that `dvc exp run -S` applies
set -f  # PARAMS' words are values: never globbed
# shellcheck disable=SC2086  # one word an assignment
python -m vaepipe.assign ${PARAMS:-}
set +f

with_remote "${training[@]}" dvc exp run --pull --allow-missing ${EXP_NAME:+--name "$EXP_NAME"}
with_push dvc exp push "$GIT_REMOTE"
with_push make share
