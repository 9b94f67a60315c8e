#!/usr/bin/env bash
# The GPU check: one command that installs wnrl offline, then tests, benchmarks and trains
# on the GPU, and writes the results as JSON and a Markdown table.
#
#     scripts/gpu_wheels.sh                  # first, on a machine with network (.gpu-wheels/)
#     scripts/gpu_check.sh [--device cuda] [--out DIR] [--wheels DIR] [--python PY]
#                          [--num-envs N] [--train-seconds S] [--bench-seconds B] [--tiny]
#                          [--no-install] [-- EXTRA BENCHMARK ARGS]
#
# Steps, each under its own time limit, each logged to DIR/<step>.log; a failed step is
# recorded and the next one still runs:
#   install    the carried wheels (pip --no-index --find-links) and wnrl itself (--no-deps,
#              editable), into PY's venv, or a new venv that sees PY's packages (torch stays);
#   versions   GPU, driver, CUDA, torch and package versions (versions.json);
#   compile    torch.compile of a tiny function on DEVICE; if it fails, the benchmark and the
#              training run stay eager (learner.compile=false) and the step shows the error;
#   tests      the CUDA-marked tests (pytest -m cuda tests/test_cuda.py
#              tests/test_replay_device.py; tests.xml);
#   benchmark  scripts/benchmark.py --device DEVICE --num-envs N --batch-sizes 32 --no-peer:
#              eager fp32, eager bf16 and compiled bf16 updates per norm, actor, replay,
#              env, the learner-only bound and end-to-end sync and async in eager bf16; at
#              most B seconds (200) (benchmark.json; arguments after `--` go to it and win,
#              e.g. -- --modes compiled-fp32);
#   benchmark_graph (CUDA) the CUDA-graph lever in one run: eager fp32 against graphed
#              fp32 and bf16 updates per norm, the bound and end to end in graphed eager
#              bf16; and the replay-on-the-device lever in the same run: a batch of 32 from
#              the host replay (sample + copy) against DeviceReplay's, and end to end with
#              replay.device host, then learner; at most 200 s (benchmark_graph.json);
#   benchmark_group (CUDA) a group of 8 runs against a solo run on the GPU, MinAtar and
#              Pong, with the group's update ungraphed and as one CUDA graph in the same
#              rounds; at most 120 s (benchmark_group.json);
#   train      Pong WN-DQN (configs/pong_wn_dqn.yaml; the default GPU mode: compile,
#              precision, CUDA graph and replay.device at auto (the replay on the GPU);
#              eager if the compile step failed or with
#              --tiny) on DEVICE for S seconds (75), then SIGINT (it checkpoints and stops;
#              the scores are the training episodes');
#   report     gpu_check.json and gpu_check.md (scripts/gpu_report.py), printed at the end.
# The exit code is 1 if any step failed, else 0.
#
# DIR defaults to $OUT (the device tool's output folder), else ./gpu_check_out. N defaults
# to the core count (the Atari vector env runs one env per core). --tiny is the dry run for
# a CPU machine (give it first): --device cpu, small sizes, eager fp32 only, a benchmark
# limit of 600 s for slow machines. On the GPU machine the whole check should take about 8
# minutes (most of it compiling the compiled-bf16 learners, one per norm); the step
# limits add up to about 16.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

DEVICE=cuda; DIR=${OUT:-gpu_check_out}; WHEELS=.gpu-wheels; PY=python3
NUM_ENVS=$(nproc); TRAIN_SECONDS=75; BENCH_SECONDS=200; GRAPH_SECONDS=200; GROUP_SECONDS=120
TINY=0; INSTALL=1
BENCH_EXTRA=()
while (($#)); do
    case $1 in
        --device) DEVICE=$2; shift 2 ;;
        --out) DIR=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --num-envs) NUM_ENVS=$2; shift 2 ;;
        --train-seconds) TRAIN_SECONDS=$2; shift 2 ;;
        --bench-seconds) BENCH_SECONDS=$2; shift 2 ;;
        --tiny) TINY=1; DEVICE=cpu; NUM_ENVS=4; BENCH_SECONDS=600; shift ;;
        --no-install) INSTALL=0; shift ;;
        --) shift; BENCH_EXTRA=("$@"); break ;;
        *) echo "gpu_check.sh: error: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
    esac
done
[[ $DEVICE == cpu || $DEVICE == cuda ]] \
    || { echo "gpu_check.sh: error: --device must be cpu or cuda, got '$DEVICE'" >&2; exit 2; }
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wnrl_gpu_check.XXXXXX")
: > "$DIR/steps.tsv"
T_START=$SECONDS

log() { echo "[gpu_check +$((SECONDS - T_START))s] $*"; }

# record NAME RC T0: note a step's exit code and seconds in steps.tsv and on the terminal
record() {
    printf '%s\t%s\t%s\n' "$1" "$2" "$((SECONDS - $3))" >> "$DIR/steps.tsv"
    tail -n 5 "$DIR/$1.log" | sed "s/^/    /"
    log "$1: exit code $2 after $((SECONDS - $3))s"
}

# run NAME LIMIT_S CMD...: run CMD under a time limit, logged to DIR/NAME.log
run() {
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    log "$name (limit ${limit}s): $*"
    timeout -k 30 "$limit" "$@" > "$DIR/$name.log" 2>&1
    record "$name" $? "$t0"
}

install() {
    local vpy=$PY pip
    if ! "$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
        # not a venv: make one that sees PY's packages (torch, numpy, tensorboard, pytest)
        vpy=$WORK/venv/bin/python
        if "$PY" -m venv --system-site-packages "$WORK/venv"; then
            pip=("$vpy" -m pip)
        else  # no ensurepip: a venv without pip, installed into by PY's pip
            "$PY" -m venv --system-site-packages --without-pip "$WORK/venv" || return 1
            pip=("$PY" -m pip --python "$vpy")
        fi
    else
        pip=("$vpy" -m pip)
    fi
    echo "$vpy" > "$WORK/python"
    "${pip[@]}" install --no-index --find-links "$WHEELS" ale-py gymnasium omegaconf tqdm \
        && "${pip[@]}" install --no-index --find-links "$WHEELS" --no-deps -e .
}

if ((INSTALL)); then
    [[ -d $WHEELS ]] || { echo "gpu_check.sh: error: no wheel folder $WHEELS" \
                               "(run scripts/gpu_wheels.sh where there is network)" >&2; exit 2; }
    t0=$SECONDS
    log "install: wheels from $WHEELS, then wnrl (editable, --no-deps)"
    install > "$DIR/install.log" 2>&1
    record install $? "$t0"
    [[ -s $WORK/python ]] && PY=$(cat "$WORK/python")
fi
export PYTHONUNBUFFERED=1

run versions 60 "$PY" scripts/gpu_report.py versions --out "$DIR"
if [[ $DEVICE == cuda ]] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'
then
    log "warning: torch sees no CUDA device: the CUDA tests will skip, the benchmark refuses"
fi
command -v nvidia-smi > /dev/null && nvidia-smi > "$DIR/nvidia-smi.txt" 2>&1

COMPILE_OK=1
if ((!TINY)); then  # --tiny stays eager
    run compile 90 "$PY" -c "import torch; f = torch.compile(lambda x: torch.relu(x) * 2,
fullgraph=True); print('torch.compile works:', f(torch.ones(4, device='$DEVICE')).tolist())"
    [[ $(tail -n 1 "$DIR/steps.tsv" | cut -f2) == 0 ]] || COMPILE_OK=0
fi

TESTS=(-m cuda)
((TINY)) && TESTS=()  # no CUDA here: run the cpu cases (the cuda ones skip)
run tests 150 "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" tests/test_cuda.py \
    tests/test_replay_device.py \
    --junitxml "$DIR/tests.xml"

# the baseline: eager and compiled learner modes, every section but the peer, the bound and
# end to end in eager bf16 (compiling takes tens of seconds per learner: the compiled modes
# are timed in the learner section only)
BENCH=(--device "$DEVICE" --num-envs "$NUM_ENVS" --no-peer --batch-sizes 32)
((TINY)) && BENCH+=(--quick --repeats 1 --env-seconds 0.5 --learning-starts 300
                    --measure-steps 300 --replay-capacity 5000)
MODES=(--modes eager-bf16 compiled-bf16); E2E=(--compile false --precision bf16)
((TINY)) && MODES=(--modes eager-fp32) && E2E=(--compile false --precision fp32)
((!COMPILE_OK)) && MODES=(--modes eager-bf16)
run benchmark "$BENCH_SECONDS" "$PY" scripts/benchmark.py "${BENCH[@]}" "${MODES[@]}" "${E2E[@]}" \
    --json "$DIR/benchmark.json" "${BENCH_EXTRA[@]}"
# the CUDA-graph lever, before and after in one run: eager fp32 against graphed fp32 and
# bf16 per norm, then the bound and end to end in graphed eager bf16
if [[ $DEVICE == cuda ]]; then
    run benchmark_graph "$GRAPH_SECONDS" "$PY" scripts/benchmark.py "${BENCH[@]}" \
        --sections learner replay e2e --modes eager-fp32-graph eager-bf16-graph \
        --compile false --precision bf16 --cuda-graph true --replay-devices host learner \
        --json "$DIR/benchmark_graph.json"
fi

# the many-runs group on the GPU: 8 runs together against one, ungraphed and with the
# group's update as one CUDA graph, in the same rounds (MinAtar and Pong)
if [[ $DEVICE == cuda ]]; then
    run benchmark_group "$GROUP_SECONDS" "$PY" scripts/benchmark.py --group 8 --device "$DEVICE" \
        --json "$DIR/benchmark_group.json"
fi

# the default GPU mode (compile, precision and CUDA graph at auto: compiled bf16, graphed)
# unless the compile step failed; the CPU dry run stays eager
TRAIN_COMPILE=false
[[ $DEVICE == cuda ]] && ((COMPILE_OK && !TINY)) && TRAIN_COMPILE=auto
TRAIN=(learner.device="$DEVICE" env.num_envs="$NUM_ENVS" train.runs_dir="$WORK/runs"
       train.run_name=gpu_check train.eval_period=0 train.log_period=10000
       learner.compile=$TRAIN_COMPILE learner.precision=auto learner.cuda_graph=auto)
((TINY)) && TRAIN+=(train.total_steps=3000 train.learning_starts=400 replay.capacity=5000
                    train.log_period=500 train.noise_period=0)
t0=$SECONDS
log "train: Pong WN-DQN (compile $TRAIN_COMPILE, precision auto, CUDA graph auto) for ${TRAIN_SECONDS}s, then SIGINT (exit code 124 = stopped as planned)"
timeout -s INT -k 60 "$TRAIN_SECONDS" "$PY" scripts/train.py --config configs/pong_wn_dqn.yaml \
    "${TRAIN[@]}" > "$DIR/train.log" 2>&1
record train $? "$t0"
mkdir -p "$DIR/train_events" && cp "$WORK"/runs/gpu_check/events.* "$DIR/train_events/" 2>/dev/null

"$PY" scripts/gpu_report.py report --out "$DIR" --run-dir "$WORK/runs/gpu_check"
rm -rf "$WORK"
# exit code: 1 if a step failed (the training run ends by the time limit: 124 is its success)
failed=$(awk -F'\t' '$2 != 0 && !($1 == "train" && $2 == 124) {print $1}' "$DIR/steps.tsv")
log "done; results in $DIR (gpu_check.md, gpu_check.json, *.log)${failed:+; failed: }${failed//$'\n'/ }"
[[ -z $failed ]]
