#!/usr/bin/env bash
# One-shot GPU check of issue 4 on an H100/H200 (no network needed), in at most ~7 minutes:
#   1. nvidia-smi
#   2. `ablate bench train` device mode: ResNet-18 SimCLR step, batch 512, bf16, channels_last,
#      torch.compile, 50,000 CIFAR-shaped uint8 images on the GPU -> $OUT/train-h200.md
#   3. benchmarks/bench_augment.py --device cuda --batch 512           -> $OUT/augment-h200.md
#      (with the colour distortion compiled as well: Triton's first compile, hence 120 s)
#   4. an end-to-end `ablate run` of a tiny grid on CUDA (shapes, ResNet-18, 2 epochs, simclr and
#      supervised, compile on)                                         -> $OUT/e2e-results.json
#   5. if time is left: the train benchmark with the views made one step ahead on a side stream
#                                                                      -> $OUT/train-h200-ahead.md
#   6. if time is left: the streaming benchmark with nvJPEG decoding on the GPU beside the CPU pipelines
#      (6,000 generated JPEGs, 224 px, batch 256, 8 workers)          -> $OUT/stream-h200.md
# Every part has its own timeout; a failing part is reported and the next one still runs.
# Everything printed also goes to $OUT/gpu_check.log.
#
# DEVICE=cpu runs the same parts at toy sizes (a check of this script on a machine without a GPU).
#
# Usage, from the repository root (python3 with torch + torchvision; missing pure-Python packages
# come as wheels in .whl/ and are installed into /tmp/site when needed):
#   OUT=/some/folder bash benchmarks/gpu_check.sh
# Wheels (fetch on a machine with pip, Python 3.12 x86-64): kornia kornia_rs pydantic pydantic_core
#   annotated_types typing_inspection typing_extensions submitit.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then
  TRAIN_ARGS=(); AUG_ARGS=(--batch 512); ARCH=resnet18; SIZE=4096; BATCH=512
else  # toy sizes: checks the script, not the speed
  TRAIN_ARGS=(--batch 32 --steps 2); AUG_ARGS=(--batch 32 --repeats 2); ARCH=small_cnn; SIZE=256; BATCH=64
fi
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee "$OUT/gpu_check.log") 2>&1
START=$(date +%s)
FAILED=()
elapsed() { echo $(( $(date +%s) - START )); }

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo; echo "=== [$(elapsed) s] $name (timeout ${limit} s)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "=== [$(elapsed) s] $name: exit $rc after $(( $(date +%s) - t0 )) s"
  [ "$rc" -eq 0 ] || FAILED+=("$name (exit $rc)")
}

echo "=== gpu_check: $(date -u +%FT%TZ) on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi || FAILED+=("nvidia-smi")

if ! "$PY" -c "import kornia, pydantic, yaml" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    echo "=== installing carried wheels into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH="$PYTHONPATH:/tmp/site" || FAILED+=("wheel install")
  else
    echo "=== kornia/pydantic missing and no .whl/ folder: the parts below will fail"
  fi
fi
"$PY" - <<'PY' || FAILED+=("versions")
import torch, torchvision, kornia, pydantic
print("torch", torch.__version__, "cuda", torch.version.cuda, "torchvision", torchvision.__version__,
      "kornia", kornia.__version__, "pydantic", pydantic.__version__, "| gpu:", torch.cuda.get_device_name(0))
PY

part "bench train" 150 "$PY" -m ablate bench train --device "$DEVICE" "${TRAIN_ARGS[@]}" --out "$OUT/train-h200.md"

part "bench augment" 120 "$PY" benchmarks/bench_augment.py --device "$DEVICE" "${AUG_ARGS[@]}" --out "$OUT/augment-h200.md"

E2E=/tmp/gpu_check_e2e
rm -rf "$E2E" && mkdir -p "$E2E"
cat > "$E2E/tiny.yaml" <<'YAML'
name: gpu-tiny
dataset: {name: shapes, train_size: SIZE, test_size: 1000, image_size: 32}
model: {arch: ARCH}
train: {epochs: 2, batch_size: BATCH, lr: 1.0, warmup_epochs: 1}
augment: {protocol: both_branches, ops: [crop, color, blur]}
eval: {linear_epochs: 30, knn_k: 200}
grid:
  method: [simclr, supervised]
YAML
sed -i "s/SIZE/$SIZE/; s/ARCH/$ARCH/; s/BATCH/$BATCH/" "$E2E/tiny.yaml"
export ABLATE_DEVICE=$DEVICE
part "e2e ablate run ($DEVICE)" 130 "$PY" -m ablate run "$E2E/tiny.yaml" --results-dir "$E2E/results" --quiet
"$PY" - "$E2E/results/gpu-tiny" "$OUT/e2e-results.json" <<'PY' || FAILED+=("e2e summary")
import json, pathlib, sys
results = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*/result.json"))]
keep = ("status", "error", "metrics", "timings", "fast_path", "curves", "provenance")
summary = [{"method": r["spec"]["method"], **{k: r.get(k) for k in keep}} for r in results]
pathlib.Path(sys.argv[2]).write_text(json.dumps(summary, indent=2, default=str))
for r in summary:
    m = r["metrics"] or {}
    print(f"{r['method']:<10} {r['status']:<9} linear_top1={m.get('linear_top1')} knn_top1={m.get('knn_top1')} "
          f"supervised_top1={m.get('supervised_top1')} images/s={m.get('images_per_second')} mfu={m.get('mfu')} "
          f"fast_path={r['fast_path']} error={(r['error'] or {}).get('message')}")
if len(summary) != 2 or any(r["status"] != "completed" for r in summary):
    sys.exit(1)
PY

unset ABLATE_DEVICE
# Every method's step against SimCLR's on the device (bf16, channels_last, compiled once per method and branch).
if [ "$DEVICE" = cuda ] && [ "$(elapsed)" -lt 220 ]; then
  part "bench methods" 120 "$PY" benchmarks/bench_methods.py --device cuda --steps 8 --repeats 3 --out "$OUT/methods-h200.md"
elif [ "$DEVICE" = cpu ]; then
  part "bench methods" 120 "$PY" benchmarks/bench_methods.py --device cpu --batch 32 --steps 2 --repeats 1 --out "$OUT/methods-cpu-toy.md"
else
  echo "=== skipping the methods benchmark ($(elapsed) s used)"
fi

if [ "$DEVICE" = cuda ] && [ "$(elapsed)" -lt 270 ]; then
  part "bench train, views made ahead" 50 "$PY" benchmarks/bench_train.py --device cuda --ahead --out "$OUT/train-h200-ahead.md"
else
  echo "=== skipping the views-ahead variant (device $DEVICE, $(elapsed) s used)"
fi

# Issue 15's GPU decoding: the batch's JPEGs decoded together by nvJPEG (ABLATE_STREAM_GPU_DECODE=1's path).
if [ "$DEVICE" = cuda ] && [ "$(elapsed)" -lt 400 ]; then
  part "bench stream, nvJPEG" 170 "$PY" benchmarks/bench_stream.py --folder /tmp/gpu_check_stream --images 6000 --size 224 \
    --batch 256 --workers 8 --batches 8 --repeats 2 --gpu-decode --out "$OUT/stream-h200.md"
elif [ "$DEVICE" = cpu ]; then
  part "bench stream" 120 "$PY" benchmarks/bench_stream.py --folder /tmp/gpu_check_stream --images 200 --size 64 \
    --batch 16 --workers 1 --batches 2 --repeats 1 --breakdown-images 10 --out "$OUT/stream-cpu-toy.md"
else
  echo "=== skipping the streaming benchmark ($(elapsed) s used)"
fi

echo
echo "=== gpu_check done in $(elapsed) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "=== FAILED parts: ${FAILED[*]}"
  exit 1
fi
echo "=== all parts passed"
