#!/bin/bash
# Chapter 4 on a lent GPU: resume meta-training, then the notebook (with `compare` beside it sharing the
# evaluation); results/art and the executed notebook come back in $OUT.
#   bash tools/gpu/art.sh DEVICE PROFILE TRAIN_MINUTES TOTAL_SECONDS
# Device call (after python tools/gpu/payload.py and bash tools/gpu/hide.sh hide): command
# "bash tools/gpu/art.sh cuda paper 5 555", carry [".gpu"], timeout 590. Locally, `bash tools/gpu/art.sh cpu smoke
# 2 400` checks the payload on the CPU (OUT defaults to /tmp/out). Back here: tar xf art.tar, then
# tools/publish_notebook.py 04.ipynb notebooks/04_neural_art.ipynb. The run record names the device of each
# meta-training stage and of the evaluation; TF32 is off (.gpu/py/sitecustomize.py), so CUDA convolutions are fp32.
DEV=${1:-cuda}; PROFILE=${2:-paper}; TRAIN_MIN=${3:-4}; TOTAL_S=${4:-560}
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
t0=$(date +%s)
if [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=$PWD/.gpu/py:/tmp/site:$PWD
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
fi
export L2L_DATA=$PWD/.gpu/data L2L_FUSED=0 PYTHONUNBUFFERED=1 L2L_CACHE=/tmp/l2lcache; unset L2L_PROFILE
python3 -c "import sys,torch,l2l,papermill; print(sys.version.split()[0], torch.__version__, 'tf32 conv', torch.backends.cudnn.allow_tf32, 'matmul', torch.backends.cuda.matmul.allow_tf32)" || exit 1
echo "setup $(( $(date +%s) - t0 )) s"
timeout $(( TRAIN_MIN * 60 + 90 )) python3 -m l2l train art --profile $PROFILE --device $DEV --no-progress --max-minutes $TRAIN_MIN 2>&1 | tee $OUT/train.log
echo "train done at $(( $(date +%s) - t0 )) s"
if ! grep -q "paused at" $OUT/train.log && grep -q "^wrote" $OUT/train.log; then
  RUN_S=$(( t0 + TOTAL_S - $(date +%s) )); echo "run budget $RUN_S s"
  timeout $RUN_S python3 -m l2l compare art --profile $PROFILE --device $DEV --no-progress > $OUT/compare.log 2>&1 &
  timeout $RUN_S python3 -m l2l run art --profile $PROFILE --device $DEV --no-progress --output $OUT/04.ipynb 2>&1 | tee $OUT/run.log
  wait
  echo "run done at $(( $(date +%s) - t0 )) s"
fi
tar cf $OUT/art.tar results/art
LEFT=$(( t0 + TOTAL_S - $(date +%s) ))  # time left over: the CUDA figures of the apply benchmark (issue 19)
if [ "$DEV" = cuda ] && [ $LEFT -gt 60 ]; then
  timeout $LEFT python3 benchmarks/bench.py --device cuda --only apply > $OUT/bench-apply-cuda.jsonl 2>&1
fi
ls -la $OUT
