#!/usr/bin/env bash
# One prepared GPU check of mec, for a lent machine with one GPU and no network, in at most 8 minutes, mmcv's CUDA
# build included. What that machine has and lacks, and why each step is where it is: benchmarks/GPU_CHECK.md.
#
#   benchmarks/gpu_check.sh prepare              # here, with pip's index: the wheels and mmcv's sdist into .whl/
#   benchmarks/gpu_check.sh run --out DIR        # on the GPU machine: the check; results and logs into DIR
#   benchmarks/gpu_check.sh --cpu-dry --out DIR  # the same steps on the CPU, small, in this environment (CI runs it)
#
# The device call (after `prepare`):  command "bash benchmarks/gpu_check.sh run --out $OUT", carry [".whl"],
# timeout_s 560. Every step runs under a time box (its own cap, and never past the whole budget, 470 s by default:
# MEC_GPU_CHECK_BUDGET); a step that fails or runs out of time is reported and the check goes on with what does not
# need it. The last lines printed are one summary (also DIR/summary.txt and DIR/gpu_check.json).
#
# Steps: wheels (install .whl/ into /tmp/site) | in the background while mmcv builds: synth (the tiny dataset), ops
# (bench_mec_ops.py --device cuda --ops-only: torch alone), numba (the evaluator's kernels compiled into their cache)
# | mmcv (its CUDA ops built from the sdist for this GPU) | abi (what the version-query crash is made of: where
# ostream's code binds, libstdc++, compilers) | doctor (mec doctor --json) | bench (bench_gpu.py, Cascade R50 and its
# baseline, timing) | then at once: memory (bench_gpu.py --memory-only, one process per model) and train
# (mec train --recipe tiny --gpus 1) followed by eval (mec eval --gpus 1 --per-stage).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=run
OUT=
while [ $# -gt 0 ]; do
  case $1 in
    prepare|run) MODE=$1 ;;
    --cpu-dry) MODE=cpu-dry ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (prepare, run, --cpu-dry, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
WHEELS=$REPO/.whl

if [ "$MODE" = prepare ]; then
  # cp312 wheels for the GPU machine's own Python 3.12 (pure-Python ones are py3): what it lacks (GPU_CHECK.md), at
  # the versions constraints.txt pins; platformdirs because yapf 0.43 needs it; setuptools, wheel and ninja for
  # mmcv's build (ninja runs MAX_JOBS compiles at once). mmcv itself travels as its sdist and is built there.
  mkdir -p "$WHEELS"
  plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
      -c "$REPO/constraints.txt" -d "$WHEELS" mmengine mmdet lvis pycocotools msgspec shapely terminaltables addict \
      yapf platformdirs typer termcolor PyYAML tqdm six packaging setuptools wheel ninja || exit 1
  $PY -m pip download -q --no-deps --no-binary :all: -c "$REPO/constraints.txt" -d "$WHEELS" mmcv || exit 1
  ls -l "$WHEELS"
  du -sh "$WHEELS"
  exit 0
fi

OUT=${OUT:-$REPO/work_dirs/gpu_check}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/mec-gpu-check.XXXXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS"
START=$SECONDS
if [ "$MODE" = cpu-dry ]; then
  BUDGET=${MEC_GPU_CHECK_BUDGET:-3600}
  SLOW=20  # each cap is for a GPU machine's 16 cores; a shared 2-core CPU machine may take many times as long
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
  GPUS=0
  BENCH_ARGS=(--device cpu --size 64,96 --recipes tiny --rois 16 --proposals 8 --reps 1 --warmup 0)
  SYNTH_ARGS=(--train-images 60 --val-images 10 --image-size 64)
  TRAIN_ARGS=(--max-iters 2 --cfg-options train_dataloader.batch_size=2)
  EVAL_ARGS=(--max-images 4)
else
  BUDGET=${MEC_GPU_CHECK_BUDGET:-470}
  SLOW=1
  export PYTHONPATH=$REPO:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  GPUS=1
  BENCH_ARGS=(--device cuda --recipes cascade_r50 --reps 5 --warmup 2)
  SYNTH_ARGS=()
  TRAIN_ARGS=(--max-iters 20)
  EVAL_ARGS=(--max-images 50)
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
MEC=("$PY" -m mec_cli.cli)
declare -A STATUS SECS
ORDER=()

left() { echo $((BUDGET - (SECONDS - START))); }

_status() {  # _status NAME RC CAP: the words for a step's exit code
  case $2 in
    0) STATUS[$1]=ok ;;
    124|137) STATUS[$1]="timed out after $3 s" ;;
    *) STATUS[$1]="failed (exit $2; see logs/$1.log)" ;;
  esac
}

cap_of() {  # cap_of CAP: the step's time box, never past the budget
  local t c=$(($1 * SLOW)); t=$(left)
  if [ "$c" -lt "$t" ]; then echo "$c"; else echo "$t"; fi
}

step() {  # step NAME CAP CMD...: run CMD in the foreground under its time box; its output into logs/NAME.log
  local name=$1 cap; cap=$(cap_of "$2"); shift 2
  ORDER+=("$name")
  if [ "$cap" -lt 5 ]; then STATUS[$name]="skipped (no time left)"; SECS[$name]=0; return 1; fi
  echo "[gpu_check $((SECONDS - START)) s] $name (at most $cap s)"
  local t0=$SECONDS rc
  timeout --kill-after=5 "$cap" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  SECS[$name]=$((SECONDS - t0))
  _status "$name" $rc "$cap"
  return $rc
}

declare -A BG_PID BG_CAP
bg_start() {  # bg_start NAME CAP CMD...: as step, in the background; bg_wait NAME collects it
  local name=$1 cap; cap=$(cap_of "$2"); shift 2
  ORDER+=("$name")
  if [ "$cap" -lt 5 ]; then STATUS[$name]="skipped (no time left)"; SECS[$name]=0; return 1; fi
  echo "[gpu_check $((SECONDS - START)) s] $name, in the background (at most $cap s)"
  ( t0=$(date +%s); timeout --kill-after=5 "$cap" "$@" >"$LOGS/$name.log" 2>&1; rc=$?
    echo "$rc $(( $(date +%s) - t0 ))" >"$WORK/$name.rc" ) &
  BG_PID[$name]=$!
  BG_CAP[$name]=$cap
}
bg_wait() {
  local name=$1
  [ -n "${BG_PID[$name]:-}" ] || return 1
  wait "${BG_PID[$name]}"
  local rc secs
  read -r rc secs <"$WORK/$name.rc" || { rc=1; secs=0; }
  SECS[$name]=$secs
  _status "$name" "$rc" "${BG_CAP[$name]}"
  return "$rc"
}
skip() { ORDER+=("$1"); STATUS[$1]="skipped ($2)"; SECS[$1]=0; }

abi_report() {  # what the crash of mmcv's version query is made of (benchmarks/GPU_CHECK.md)
  local ext lib
  ext=$("$PY" -c "import glob, os, mmcv, torch; print('# torch', torch.__version__, 'cxx11 abi',
torch.compiled_with_cxx11_abi()); print(glob.glob(os.path.join(os.path.dirname(mmcv.__file__), '_ext*.so'))[0])")
  echo "$ext" | head -1
  ext=$(echo "$ext" | tail -1)
  echo "# mmcv _ext: $ext"
  { g++ --version | head -1; gcc --version | head -1; nvcc --version 2>/dev/null | tail -1; } 2>&1
  echo "# libraries of _ext:"; ldd "$ext" | grep -E 'stdc\+\+|gcc_s|torch|c10'
  lib=$(ldd "$ext" | awk '/libstdc\+\+/{print $3}')
  echo "# newest GLIBCXX of $lib: $(strings "$lib" | grep -E '^GLIBCXX_3\.4\.[0-9]+$' | sort -V | tail -1)"
  echo "# ostream code defined inside _ext (a build whose calls bind to libstdc++ has none):"
  nm -DC --defined-only "$ext" | grep -cE 'std::basic_ostream|std::ostream::_M_insert|basic_ostringstream'
  nm -DC --defined-only "$ext" | grep -E 'std::ostream::_M_insert|std::basic_ostream<char' | head -10
  echo "# where std::ostream::_M_insert<long> binds when the version is asked:"
  LD_DEBUG=bindings LD_DEBUG_OUTPUT=$WORK/lddebug "$PY" -c \
    "from mmcv.ops import get_compiler_version as g; print('get_compiler_version:', g())"
  echo "get_compiler_version exit $?"
  grep -h '_ZNSo9_M_insertIlEERSoT_' "$WORK"/lddebug.* 2>/dev/null | sed 's/^ *[0-9]*: *//' | sort | uniq | head -5
  rm -f "$WORK"/lddebug.*
  "$PY" -c "from mmcv.ops import get_compiling_cuda_version as g; print('get_compiling_cuda_version:', g())"
  echo "get_compiling_cuda_version exit $?"
  if command -v gdb >/dev/null; then
    gdb -q -batch -ex run -ex bt --args "$PY" -c "from mmcv.ops import get_compiler_version as g; g()" 2>&1 | tail -25
  fi
  return 0
}

# ---- the steps ---------------------------------------------------------------------------------------------------
if [ "$MODE" = run ]; then
  if ! nvidia-smi -L >/dev/null 2>&1; then echo "gpu_check.sh run: no GPU answers nvidia-smi" >&2; exit 2; fi
  if [ -d "$WHEELS" ]; then
    step wheels 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$WHEELS"/*.whl
  else
    skip wheels "no .whl/: run benchmarks/gpu_check.sh prepare here first"
  fi
else
  skip wheels cpu-dry
fi

bg_start synth 90 "${MEC[@]}" synth --out "$WORK/synth" --seed 0 "${SYNTH_ARGS[@]}"
if [ "$MODE" = run ]; then
  bg_start ops 90 "$PY" "$REPO/benchmarks/bench_mec_ops.py" --device cuda --ops-only --out "$OUT/mec_ops_gpu.json"
else
  skip ops cpu-dry
fi
if [ -f "$REPO/mec_cli/evaluation/warmup.py" ]; then
  bg_start numba 240 "$PY" -m mec_cli.evaluation.warmup
else
  skip numba "this tree compiles the evaluator's kernels on first use"
fi

if [ "$MODE" = run ]; then
  ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' ')
  SDIST=$(ls "$WHEELS"/mmcv-*.tar.gz 2>/dev/null | head -1)
  if [ -n "$SDIST" ] && step mmcv 360 env MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$(nproc)" \
      CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" "$PY" -m pip wheel -q --no-build-isolation --no-deps --no-index \
      "$SDIST" -w "$WORK/mmcv-wheel"; then
    "$PY" -m pip install -q --no-index --no-deps --no-cache-dir --upgrade --target /tmp/site "$WORK"/mmcv-wheel/*.whl \
      >>"$LOGS/mmcv.log" 2>&1 || STATUS[mmcv]="built, but its install failed (see logs/mmcv.log)"
  elif [ -z "$SDIST" ]; then
    skip mmcv "no mmcv sdist in .whl/"
  fi
else
  skip mmcv cpu-dry
fi
bg_wait synth
bg_wait ops
bg_wait numba

export PY WORK
export -f abi_report
step abi 30 bash -c abi_report
step doctor 90 bash -c 'exec "$@" >"$0"' "$WORK/doctor.json" "${MEC[@]}" doctor --json  # the JSON apart from the log
step bench 170 "$PY" "$REPO/benchmarks/bench_gpu.py" "${BENCH_ARGS[@]}" --no-memory --out "$OUT/bench_gpu.json" \
  --md "$OUT/bench_gpu.md"
bg_start memory 120 "$PY" "$REPO/benchmarks/bench_gpu.py" "${BENCH_ARGS[@]}" --memory-only --out "$OUT/bench_memory.json"
if step train 100 "${MEC[@]}" train --recipe tiny --gpus "$GPUS" --data-root "$WORK/synth" --work-dir "$WORK/train" \
    --seed 0 "${TRAIN_ARGS[@]}"; then
  CKPT=$(cat "$WORK/train/last_checkpoint")
  step eval 100 "${MEC[@]}" eval --checkpoint "$CKPT" --recipe tiny --gpus "$GPUS" --data-root "$WORK/synth" \
    --per-stage --out "$WORK/metrics.json" "${EVAL_ARGS[@]}"
else
  skip eval "no checkpoint: train did not finish"
fi
bg_wait memory

# ---- the summary ---------------------------------------------------------------------------------------------------
TOTAL=$((SECONDS - START))
STEPS_TSV=$WORK/steps.tsv
: >"$STEPS_TSV"
FAILED=0
for name in "${ORDER[@]}"; do
  printf '%s\t%s\t%s\n' "$name" "${SECS[$name]:-0}" "${STATUS[$name]:-not run}" >>"$STEPS_TSV"
  case ${STATUS[$name]:-} in ok|"skipped (cpu-dry)"|"skipped (this tree"*) ;; *) FAILED=1 ;; esac
done
"$PY" - "$MODE" "$TOTAL" "$BUDGET" "$STEPS_TSV" "$OUT" "$WORK" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path

mode, total, budget, steps_tsv, out, work = sys.argv[1:]
out, work = Path(out), Path(work)
steps = [dict(zip(("step", "seconds", "status"), line.split("\t"))) for line in Path(steps_tsv).read_text().splitlines()]


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


doc = {"mode": mode, "total_s": int(total), "budget_s": int(budget), "steps": steps}
lines = [f"gpu_check ({mode}): {total} s of {budget} s", "", f"{'step':<8} {'s':>4}  status"]
lines += [f"{s['step']:<8} {s['seconds']:>4}  {s['status']}" for s in steps]
bench, memory = load(out / "bench_gpu.json"), load(out / "bench_memory.json")
if bench:
    doc["env"] = bench.get("env")
    lines += ["", f"bench_gpu ({bench['device']}, {bench['precision']}, {bench['size'][0]}x{bench['size'][1]}, "
              f"{bench['reps']} rounds; median ms)"]
    for name, pair in bench["pairs"].items():
        tr, te = pair["train"], pair.get("test")
        line = (f"  {name}: train {tr['baseline']['median_ms']:.1f} -> {tr['mec']['median_ms']:.1f} "
                f"({tr['mec_vs_baseline_pct']:+.1f}%)")
        if te:
            line += (f"; test {te['baseline']['median_ms']:.1f} -> {te['mec']['median_ms']:.1f} "
                     f"({te['mec_vs_baseline_pct']:+.1f}%), all {len(te['all_modes'])} modes "
                     f"{te['mec_all_modes']['median_ms']:.1f} ({te['all_modes_vs_one_pct']:+.1f}% vs one)")
        syncs = pair["host_syncs_train"]
        line += f"; host syncs per train step {syncs['baseline']['total']} / {syncs['mec']['total']}"
        lines.append(line)
        doc.setdefault("bench", {})[name] = {"train_pct": tr["mec_vs_baseline_pct"],
                                             "test_pct": te and te["mec_vs_baseline_pct"]}
if memory:
    for name, pair in memory["pairs"].items():
        m = pair.get("memory") or {}
        if m:
            lines.append(f"  {name} peak MiB: train {m['baseline']['train_peak_mib']:.0f} -> {m['mec']['train_peak_mib']:.0f}"
                         f" ({m['train_mec_vs_baseline_pct']:+.2f}%), test {m['baseline']['test_peak_mib']:.0f} -> "
                         f"{m['mec']['test_peak_mib']:.0f} ({m['test_mec_vs_baseline_pct']:+.2f}%)")
            doc.setdefault("memory", {})[name] = {"train_pct": m["train_mec_vs_baseline_pct"],
                                                  "test_pct": m["test_mec_vs_baseline_pct"]}
doctor = load(work / "doctor.json")
if doctor:
    cuda = doctor.get("cuda") or {}
    lines += ["", f"doctor: {doctor.get('cuda_summary')}; mmcv CUDA {cuda.get('mmcv_cuda') or cuda.get('mmcv_crash') or '-'}; "
              f"GPU op check: {cuda.get('cuda_op') or 'not run'}; {len(doctor['problems'])} problems, "
              f"{len(doctor.get('warnings', []))} warnings"]
    lines += [f"  problem: {p}" for p in doctor["problems"]] + [f"  warning: {w}" for w in doctor.get("warnings", [])]
    doc["doctor"] = {"problems": doctor["problems"], "warnings": doctor.get("warnings", []),
                     "cuda_op": cuda.get("cuda_op"), "mmcv_crash": cuda.get("mmcv_crash")}
metrics = load(work / "metrics.json")
if metrics:
    modes = metrics.get("modes", {})
    ap = {m: round(100 * v["bbox"]["AP"], 1) for m, v in modes.items() if "bbox" in v}
    lines += ["", f"eval: {len(modes)} modes from one pass; bbox AP " + ", ".join(f"{m} {a}" for m, a in ap.items())]
    doc["eval"] = {"modes": list(modes), "bbox_AP": ap}
ops = load(out / "mec_ops_gpu.json")
if ops:
    agree = ops.get("agreement_vs_cpu_float64", {})
    worst = max((v["value_max_abs_diff"] for v in agree.values()), default=None)
    lines += ["", f"MEC ops on {ops['ops']['device']}: loss {ops['ops']['mec_loss_ms']:.2f} ms vs CE "
              f"{ops['ops']['ce_ms']:.2f} ms; dynamic+GA {ops['ops']['dynamic_ga_ms']:.2f} ms; largest difference "
              f"from the CPU in float64 {worst}"]
print("\n".join(lines))
(out / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
EOF
cp "$WORK/metrics.json" "$WORK/doctor.json" "$LOGS/" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs 2>/dev/null
[ "$MODE" = cpu-dry ] && rm -rf "$WORK"
exit $FAILED
