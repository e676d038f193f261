#!/usr/bin/env bash
# bash scripts/gpu-check.sh        (on a machine with an NVIDIA GPU and gpt4llm installed with CUDA torch)
#
# The GPU paths in one short go (< 10 min on one recent GPU with the embedded Gemma-3-270M),
# one line per check, PASS or FAIL and the numbers:
#   1. bf16 LoRA training with the fast path (train/fastpath.py);
#   2. the same run with --no-fast-path: the loss curves must agree (bf16: within 2%) and the
#      speed ratio is printed;
#   3. batched respond (batch 32) vs batch 1: identical greedy outputs, tokens/s of each;
#   4. a 1-GPU FSDP run (configs/accelerate/fsdp.yaml, full fine-tuning) through
#      `--launcher accelerate`: it must really run as FSDP and lower the loss;
#   5. respond --engine vllm (vLLM's offline engine, in process or in the vLLM venv named by
#      GPT4LLM_VLLM_PYTHON): the same 32 greedy answers as check 3's transformers engine, at
#      least half identical and a mean ROUGE-L >= 0.8 (kernels differ; a template or stop bug
#      gives far less), and its tokens/s;
#   6. respond on one Ray actor holding the GPU (--num-workers 1, `gpt4llm[ray]`): the batches
#      one process runs, so the very answers of check 3 (32/32).
# Exit status: the number of failed checks. Environment: GPU_CHECK_MODEL (default embedded),
# GPT4LLM (the CLI, default: the one on PATH or in .venv/bin), PYTHON, GPT4LLM_VLLM_PYTHON
# (a python with vLLM where it is not importable beside gpt4llm: the two are separate venvs).
set -u
cd "$(dirname "$0")/.."
GPT4LLM=${GPT4LLM:-$(command -v gpt4llm || echo .venv/bin/gpt4llm)}
PYTHON=${PYTHON:-$(dirname "$GPT4LLM")/python}
MODEL=${GPU_CHECK_MODEL:-embedded}
WORK=$(mktemp -d -t gpu-check-XXXX)
trap 'rm -rf "$WORK"' EXIT
FAILED=0

"$PYTHON" - <<'EOF' || { echo "FAIL setup: no CUDA GPU visible to torch"; exit 1; }
import sys, torch
if not torch.cuda.is_available():
    sys.exit(1)
print(f"gpu: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
EOF

# data: 256 Alpaca-shaped records (bench/sft.py's synthetic data) and 32 questions
"$PYTHON" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, "bench")
from sft import synth
work = Path(sys.argv[1])
recs = synth(256, seed=1)
(work / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
(work / "q.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "instruction": r["instruction"], "input": r["input"]}) + "\n"
                                      for i, r in enumerate(recs[:32])))
EOF

summary() {  # summary KEY... of OUT/manifest.json
  "$PYTHON" -c 'import json,sys; s=json.load(open(sys.argv[1]+"/manifest.json"))["summary"]; print(*[s.get(k) for k in sys.argv[2:]])' "$@"
}
curve() {  # the logged training losses of OUT
  "$PYTHON" -c 'import json,sys; print(json.dumps([json.loads(l)["loss"] for l in open(sys.argv[1]+"/log.jsonl") if "\"loss\"" in l]))' "$1"
}
check() {  # check NAME COMMAND...: PASS/FAIL line from the command's one-line verdict
  local name=$1; shift
  local line
  if line=$("$@" 2>"$WORK/$name.err"); then echo "PASS $name: $line"; else
    echo "FAIL $name: ${line:-$(tail -n 3 "$WORK/$name.err" | tr '\n' ' ')}"; FAILED=$((FAILED + 1)); fi
}

TRAIN=(train sft "$WORK/sft.jsonl" --model "$MODEL" --max-steps 30 --per-device-batch-size 8
       --max-seq-len 512 --precision bf16 --eval-fraction 0 --logging-steps 1 --save-steps 1000
       --lora-dropout 0 --no-merge --no-resume)

fast_path() {
  "$GPT4LLM" "${TRAIN[@]}" -o "$WORK/fast" >/dev/null || return 1
  read -r steps secs < <(summary "$WORK/fast" steps train_seconds)
  echo "bf16 LoRA, fast path: $steps steps in $secs s, loss $(curve "$WORK/fast" | "$PYTHON" -c 'import json,sys; c=json.load(sys.stdin); print(f"{c[0]:.3f} -> {c[-1]:.3f}")')"
}
library_path() {
  "$GPT4LLM" "${TRAIN[@]}" -o "$WORK/lib" --no-fast-path >/dev/null || return 1
  "$PYTHON" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
def curve(d): return [json.loads(l)["loss"] for l in open(w / d / "log.jsonl") if '"loss"' in l]
def secs(d): return json.load(open(w / d / "manifest.json"))["summary"]["train_seconds"]
fast, lib = curve("fast"), curve("lib")
worst = max(abs(a - b) / abs(b) for a, b in zip(fast, lib))
print(f"--no-fast-path: {secs('lib'):.1f} s (fast path {secs('lib') / secs('fast'):.2f}x faster); "
      f"largest relative loss difference {worst:.2%} over {len(lib)} steps")
sys.exit(0 if len(fast) == len(lib) and worst < 0.02 else 1)
EOF
}
respond() {
  local t0 t1 t2
  t0=$(date +%s.%N)
  "$GPT4LLM" respond "$WORK/q.jsonl" --model "$MODEL" -o "$WORK/r32.jsonl" --engine transformers --batch-size 32 --max-new-tokens 64 >/dev/null 2>&1 || return 1
  t1=$(date +%s.%N)
  "$GPT4LLM" respond "$WORK/q.jsonl" --model "$MODEL" -o "$WORK/r1.jsonl" --engine transformers --batch-size 1 --max-new-tokens 64 >/dev/null 2>&1 || return 1
  t2=$(date +%s.%N)
  "$PYTHON" - "$WORK" "$t0" "$t1" "$t2" <<'EOF'
import json, sys
from pathlib import Path
w, t0, t1, t2 = Path(sys.argv[1]), *map(float, sys.argv[2:])
r32 = [json.loads(l) for l in open(w / "r32.jsonl")]
r1 = [json.loads(l) for l in open(w / "r1.jsonl")]
same = sum(a["output"] == b["output"] for a, b in zip(r32, r1))
tok = sum(r["completion_tokens"] for r in r32)
print(f"batch 32: {tok / (t1 - t0):.0f} tok/s, batch 1: {sum(r['completion_tokens'] for r in r1) / (t2 - t1):.0f} tok/s "
      f"(wall, with model load); identical greedy outputs {same}/{len(r1)}")
sys.exit(0 if same == len(r1) == 32 else 1)
EOF
}
fsdp() {
  "$GPT4LLM" train sft "$WORK/sft.jsonl" --model "$MODEL" -o "$WORK/fsdp" --no-lora --max-steps 20 \
    --per-device-batch-size 4 --max-seq-len 512 --precision bf16 --eval-fraction 0 --logging-steps 1 \
    --save-steps 10 --learning-rate 2e-5 --launcher accelerate \
    --accelerate-config configs/accelerate/fsdp.yaml --num-processes 1 >/dev/null || return 1
  read -r dist procs secs < <(summary "$WORK/fsdp" distributed processes train_seconds)
  local c; c=$(curve "$WORK/fsdp")
  echo "1-GPU FSDP ($dist, $procs process): 20 steps in $secs s, loss $(echo "$c" | "$PYTHON" -c 'import json,sys; c=json.load(sys.stdin); print(f"{c[0]:.3f} -> {c[-1]:.3f}")')"
  [ "$dist" = FSDP ] && echo "$c" | "$PYTHON" -c 'import json,sys; c=json.load(sys.stdin); sys.exit(0 if c[-1] < c[0] else 1)'
}

compare_answers() {  # compare_answers REFERENCE CANDIDATE MIN_SHARE MIN_ROUGE [SECONDS]: one line, exit status
  "$PYTHON" - "$WORK" "$@" <<'EOF'
import json, sys
from pathlib import Path
from gpt4llm.text.rouge import score
w, ref, cand = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
min_share, min_rouge, *secs = map(float, sys.argv[4:])
a = [json.loads(l) for l in open(w / ref)]
b = [json.loads(l) for l in open(w / cand)]
same = sum(x["output"] == y["output"] for x, y in zip(a, b))
rouge = [1.0 if x["output"] == y["output"] else score(x["output"], y["output"], types=("rougeL",))["rougeL"]
         for x, y in zip(a, b)]
mean = sum(rouge) / max(1, len(rouge))
speed = f", {sum(y['completion_tokens'] for y in b) / secs[0]:.0f} tok/s (wall, with start-up)" if secs else ""
print(f"identical {same}/{len(a)}, mean ROUGE-L {mean:.3f} against the transformers engine{speed}")
sys.exit(0 if len(a) == len(b) == 32 and same >= min_share * 32 and mean >= min_rouge else 1)
EOF
}
vllm_engine() {
  [ -s "$WORK/r32.jsonl" ] || { echo "needs respond-batched's answers"; return 1; }
  local t0 t1
  t0=$(date +%s.%N)
  "$GPT4LLM" respond "$WORK/q.jsonl" --model "$MODEL" -o "$WORK/rv.jsonl" --engine vllm --batch-size 32 \
    --max-new-tokens 64 >/dev/null 2>"$WORK/vllm.log" || { tail -n 1 "$WORK/vllm.log"; return 1; }
  t1=$(date +%s.%N)
  echo "vLLM engine: $(compare_answers r32.jsonl rv.jsonl 0.5 0.8 "$("$PYTHON" -c "print($t1 - $t0)")")"
  compare_answers r32.jsonl rv.jsonl 0.5 0.8 >/dev/null
}
ray_actor() {
  [ -s "$WORK/r32.jsonl" ] || { echo "needs respond-batched's answers"; return 1; }
  "$GPT4LLM" respond "$WORK/q.jsonl" --model "$MODEL" -o "$WORK/rr.jsonl" --num-workers 1 --batch-size 32 \
    --max-new-tokens 64 >/dev/null 2>"$WORK/ray.log" || { tail -n 1 "$WORK/ray.log"; return 1; }
  echo "1 Ray actor on the GPU: $(compare_answers r32.jsonl rr.jsonl 1 1)"
  compare_answers r32.jsonl rr.jsonl 1 1 >/dev/null
}

check train-bf16-fast-path fast_path
check train-bf16-library-path library_path
check respond-batched respond
check fsdp-1-gpu fsdp
check vllm-engine vllm_engine
check ray-actor ray_actor
echo "$((6 - FAILED))/6 checks passed"
exit "$FAILED"
