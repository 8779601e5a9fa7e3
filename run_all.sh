#!/usr/bin/env bash
# Regenerate the study, or run its tests. Sets up the environment (.venv, from env.yml) when needed.
#
#   ./run_all.sh [PROFILE] [--redo] [--only NN]   run the notebooks in order with papermill
#       PROFILE = default  the full study on the built-in world (CPU, ~80 min on 2 cores); writes results/ and results/executed/
#                 smoke    a tiny run (minutes); re-executes notebooks/ in place (the outputs nbval checks),
#                          writes results/smoke/
#                 hicodet  real HICO-DET + ViT-B/16 on a GPU; needs HICODET_ROOT and CLIP_WEIGHTS set;
#                          writes results/hicodet/ and results/hicodet/executed/
#                 hicodet-smoke  the hicodet path on a small HICO-DET-format fixture with random weights (CPU,
#                          minutes); uses HICODET_ROOT and CLIP_WEIGHTS when set, else builds the fixture once under
#                          cache/hicodet-smoke/ (python -m hoilib.fixture; delete that folder to rebuild it);
#                          writes results/hicodet-smoke/ and results/hicodet-smoke/executed/
#       hicodet and hicodet-smoke first check the root and the weights (python -m hoilib.preflight) and stop
#       with every problem listed (exit status 2) before any notebook runs
#       --redo     re-run notebooks whose outputs are up to date (same notebook, code and profile)
#       --only NN  run only the notebook whose name starts with NN (e.g. --only 05)
#   ./run_all.sh test   run every test: pytest (unit tests) and nbval (the notebooks, smoke profile)
set -euo pipefail
cd "$(dirname "$0")"

PROFILE=default REDO=0 ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    default|smoke|hicodet|hicodet-smoke|test) PROFILE=$1 ;;
    --redo) REDO=1 ;;
    --only) ONLY=${2:?--only needs a notebook number}; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "run_all: unknown argument '$1' (see ./run_all.sh --help)" >&2; exit 2 ;;
  esac
  shift
done

python3 scripts/make_env.py env.yml .venv
PY=.venv/bin/python
export PYTHONHASHSEED=0 MPLBACKEND=Agg TRITON_INTERPRET=1 JUPYTER_PLATFORM_DIRS=1
# Torch's CPU kernels are deterministic for a fixed thread count; pin it so that numbers reproduce. One thread:
# the study's models are small, a second thread gains little, and under any other load it costs a lot.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [ "$PROFILE" = test ]; then
  echo "run_all: unit tests"
  "$PY" -m pytest -q -p no:cacheprovider tests
  echo "run_all: notebooks under nbval (smoke profile)"
  TQDM_DISABLE=1 "$PY" -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
      --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/
  exit 0
fi

case "$PROFILE" in
  default) OUT=results/executed; PARAMS=(-p PROFILE default -p RESULTS_DIR ../results) ;;
  smoke)   OUT=notebooks;        PARAMS=() ;;
  hicodet) HICODET_ROOT=${HICODET_ROOT:-} CLIP_WEIGHTS=${CLIP_WEIGHTS:-} ;;  # unset: the preflight says so
  hicodet-smoke)
    FIXTURE=cache/hicodet-smoke
    if [ -z "${HICODET_ROOT:-}${CLIP_WEIGHTS:-}" ] && [ ! -f "$FIXTURE/weights/hoi-smoke-vit.pt" ]; then
      echo "run_all: building the HICO-DET-format fixture in $FIXTURE (python -m hoilib.fixture)"
      "$PY" -m hoilib.fixture --out "$FIXTURE"
    fi
    HICODET_ROOT=${HICODET_ROOT:-$FIXTURE/hicodet} CLIP_WEIGHTS=${CLIP_WEIGHTS:-$FIXTURE/weights/hoi-smoke-vit.pt} ;;
esac
if [ "$PROFILE" = hicodet ] || [ "$PROFILE" = hicodet-smoke ]; then
  # Everything the notebooks will read, checked before the first one starts; exit status 2 lists every problem.
  "$PY" -m hoilib.preflight \
      --profile "$PROFILE" --root "$HICODET_ROOT" --clip-weights "$CLIP_WEIGHTS"
  OUT=results/$PROFILE/executed
  PARAMS=(-p PROFILE "$PROFILE" -p RESULTS_DIR "../results/$PROFILE" -p HICODET_ROOT "$(realpath "$HICODET_ROOT")"
          -p CLIP_CHECKPOINT "$(realpath "$CLIP_WEIGHTS")")
fi
mkdir -p "$OUT/.stamps"

# The library code and the environment file, hashed once.
code_hash=$(cat env.yml $(git ls-files 'hoilib/*' 2>/dev/null || find hoilib -type f -name '*.py' -o -name '*.json' | sort) | sha256sum | cut -c1-16)
notebooks=(notebooks/[0-9][0-9]_*.ipynb)
n=${#notebooks[@]} i=0 ran=0 matched=0 start_all=$(date +%s)
for nb in "${notebooks[@]}"; do
  i=$((i + 1)); name=$(basename "$nb" .ipynb)
  if [ -n "$ONLY" ] && [[ "$name" != "$ONLY"* ]]; then continue; fi
  matched=1
  stamp="$OUT/.stamps/$name"
  # The parameters are part of it: a run on other data (HICODET_ROOT, CLIP_WEIGHTS) is not up to date.
  want="$PROFILE ${PARAMS[*]} $code_hash $("$PY" scripts/nbsync.py hash "$nb")"
  # Up to date: same code cells, library and profile; an edit of the prose alone is copied over, not re-run.
  if [ "$REDO" = 0 ] && [ "$OUT" != notebooks ] && [ -f "$OUT/$name.ipynb" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
      && "$PY" scripts/nbsync.py prose "$nb" "$OUT/$name.ipynb"; then
    echo "run_all: [$i/$n] $name is up to date (--redo to run it again)"
    continue
  fi
  echo "run_all: [$i/$n] $name ($PROFILE) ..."
  t0=$(date +%s)
  # The executed copy is written under a hidden temporary name and moved into place only when complete.
  if ! "$PY" scripts/run_notebook.py "$nb" "$OUT/$name.ipynb" "${PARAMS[@]}"; then
    echo "run_all: FAILED in $name" >&2
    exit 1
  fi
  [ "$OUT" = notebooks ] || echo "$want" > "$stamp"
  ran=$((ran + 1))
  echo "run_all: [$i/$n] $name done in $(( $(date +%s) - t0 )) s"
done
if [ -n "$ONLY" ] && [ "$matched" = 0 ]; then
  echo "run_all: no notebook name starts with '$ONLY' (notebooks: $(basename -a "${notebooks[@]}" | tr '\n' ' '))" >&2
  exit 2
fi
# The claims table (results/tables/tab_claims), regenerated from the tables the notebooks wrote; the default
# profile also writes it into the README (between its claims markers).
case "$PROFILE" in
  default) "$PY" -m hoilib.claims results --readme README.md ;;
  smoke)   "$PY" -m hoilib.claims results/smoke ;;
  *)       "$PY" -m hoilib.claims "results/$PROFILE" ;;
esac
echo "run_all: $PROFILE profile finished in $(( $(date +%s) - start_all )) s ($ran notebooks run)"
