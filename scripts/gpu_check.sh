#!/usr/bin/env bash
# The GPU checks of docs/speed.md, as one script for a lent GPU machine (no network there).
#
#   bash scripts/gpu_check.sh [OUT_DIR] [STEPS]
#
# STEPS (comma-separated, default all): toy, profile, ranks, build, fpu, memory, batch, run, runcos.
#   toy     the default `creg run` on CUDA, float32 and bfloat16 (the CUDA/bf16 path; bf16 vs fp32 numbers)
#   build   a random-init model of Qwen2-VL-7B-Instruct's shape (8.3 B parameters, bf16) in $MODEL
#   fpu     scripts/bench_throughput.py --sections fpu on it: FPU per source and for the Table-1 set
#   memory  peak CUDA memory per phase on it
#   batch   samples/s at batch sizes 1, 4, 16 on it (256 vision tokens)
#   profile torch.profiler (CPU + CUDA) of the toy model's Table-1 batch: device time by op, host syncs
#   ranks   1 vs 2 CPU processes on the toy model (the machine's 16 cores: each rank gets its own core)
#   run     the Table-1 run on it at 1024 vision tokens, $RUN_N samples, timed (creg run prints its seconds)
#   runcos  the same with --cos
# Missing Python packages travel as wheels in .whl/ (docs/speed.md says which); each step has its
# own time limit and a failed step does not stop the others. Everything printed goes to OUT_DIR/gpu_log.txt.
set -u
OUT_DIR=${1:-${OUT:-/tmp/gpu_out}}
STEPS=${2:-toy,profile,ranks,build,fpu,memory,batch,run,runcos}
MODEL=${MODEL:-/tmp/qwen2vl-7b}
RUN_N=${RUN_N:-64}
TOY_N=${TOY_N:-200}
FPU_TOKENS=${FPU_TOKENS:-64,256,1024}
FPU_REPEATS=${FPU_REPEATS:-3}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_log.txt"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
TABLE1=creg,creg_gt,attention_rollout,gradnorm,integrated_gradients,gradcam,random,oracle

say() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }
step() {  # step NAME LIMIT_S CMD...
    local name=$1 limit=$2; shift 2
    case ",$STEPS," in *",$name,"*) ;; *) return 0 ;; esac
    say "step $name (limit ${limit}s): $*"
    local t0=$(date +%s)
    timeout "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    say "step $name: rc=$rc, $(( $(date +%s) - t0 )) s"
}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >>"$LOG" 2>&1 && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$LOG" 2>&1 || say "editable install failed"
say "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, pydantic; print('torch', torch.__version__, 'transformers', transformers.__version__, 'pydantic', pydantic.__version__, 'cuda', torch.cuda.is_available())"
  python3 -m creg list | head -5; } >>"$LOG" 2>&1

step toy 90 python3 -m creg run --device cuda --dtype float32 --limit $TOY_N --batch-size auto --no-progress --out /tmp/toy-fp32
step toy 90 python3 -m creg run --device cuda --dtype bfloat16 --limit $TOY_N --batch-size auto --no-progress --out /tmp/toy-bf16
step profile 90 python3 scripts/bench_throughput.py --sections profile --device cuda --dtype float32
step ranks 150 python3 scripts/bench_throughput.py --sections ranks --n-ranks 64 --rank-repeats 2
step build 240 python3 -c "import sys; sys.path.insert(0, 'scripts'); import bench_throughput as b; b.build_7b('$MODEL', 'cuda')"
step fpu 150 python3 scripts/bench_throughput.py --sections fpu --model "$MODEL" --device cuda --dtype bfloat16 \
    --tokens $FPU_TOKENS --per-source-max 1024 --cos-max 1024 --repeats $FPU_REPEATS --no-toy
step memory 120 python3 scripts/bench_throughput.py --sections memory --model "$MODEL" --device cuda --dtype bfloat16 \
    --tokens 64,256,1024
step batch 200 python3 scripts/bench_throughput.py --sections batch --batch-model deep --batch-tokens 256 --model "$MODEL" \
    --device cuda --dtype bfloat16 --n-batch 16 --repeats 1
RUN7B="python3 -m creg run --adapter qwen2vl --model $MODEL --device cuda --dtype bfloat16 --source $TABLE1 \
    --bench synthetic --bench-opt width=896 --bench-opt height=896 --limit $RUN_N --batch-size auto --no-progress"
step run 150 bash -c "time $RUN7B --out /tmp/run-7b"
step runcos 240 bash -c "time $RUN7B --cos --out /tmp/run-7b-cos"
for d in /tmp/toy-fp32 /tmp/toy-bf16 /tmp/run-7b /tmp/run-7b-cos; do
    [ -f "$d/config.json" ] && python3 -c "import json,sys; c=json.load(open('$d/config.json')); print('$d', json.dumps({k: c.get(k) for k in ('execution', 'environment')}, default=str)[:1500])" >>"$LOG" 2>&1
done
for d in toy-fp32 toy-bf16; do  # per-record comparison of float32 and bfloat16 (docs/paper-to-code.md)
    [ -f "/tmp/$d/records.jsonl" ] && cp "/tmp/$d/records.jsonl" "$OUT_DIR/$d-records.jsonl"
done
say "done"
