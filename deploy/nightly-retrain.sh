#!/bin/sh
# The `retrain` service's schedule: run `antispam retrain` for each model every day at
# $RETRAIN_AT (HH:MM, container time; set TZ to choose the zone), forever.
#
# A shell loop instead of cron: no daemon, no extra package, logs go to stdout like every other
# service, and `docker stop` ends it at once (the trap). If a model has no version yet, it is
# trained right away, so `docker compose up` on an empty models volume ends with a served model.
# The job itself is safe to overlap (it takes a lock in the model folder), so a manual
# `docker compose run --rm retrain antispam retrain --model rnn` during the night is harmless.
set -u

at="${RETRAIN_AT:-03:00}"
models="${RETRAIN_MODELS:-rnn}"
base="${ANTISPAM_MODEL_BASE:-/models}"

trap 'echo "nightly-retrain: stopping"; exit 0' TERM INT

# Check the schedule before any work: a typo should stop the container at once, not after an
# initial training that can take minutes.
case "$at" in
  [0-1][0-9]:[0-5][0-9]|2[0-3]:[0-5][0-9]) ;;
  *) echo "nightly-retrain: bad RETRAIN_AT=$at (want HH:MM, 00:00-23:59)"; exit 2 ;;
esac

retrain() {
  model="$1"
  echo "nightly-retrain: $(date -Iseconds) retraining $model"
  antispam retrain --model "$model" --model-base "$base"
  rc=$?
  case "$rc" in
    0) echo "nightly-retrain: $model: new version published" ;;
    3) echo "nightly-retrain: $model: gate refused the new version (see the promotion log)" ;;
    4) echo "nightly-retrain: $model: another retrain holds the lock; skipped" ;;
    *) echo "nightly-retrain: $model: failed with exit code $rc" ;;
  esac
}

has_version() {
  for entry in "$base/$1"/*; do
    case "${entry##*/}" in
      *[!0-9]*|'') ;;
      *) [ -f "$entry/saved_model.pb" ] && return 0 ;;
    esac
  done
  return 1
}

for model in $models; do
  has_version "$model" || retrain "$model"
done

while true; do
  now=$(date +%s)
  next=$(date -d "today $at" +%s) || { echo "nightly-retrain: bad RETRAIN_AT=$at (want HH:MM)"; exit 2; }
  [ "$next" -gt "$now" ] || next=$(date -d "tomorrow $at" +%s)
  echo "nightly-retrain: next run at $(date -d "@$next" -Iseconds)"
  sleep $((next - now)) &
  wait $!
  for model in $models; do
    retrain "$model"
  done
done
