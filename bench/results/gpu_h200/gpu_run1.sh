#!/bin/bash
# One prepared GPU check for issues 12 and 13: every run in parallel, each bounded, results tarred.
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1 LATENTMAP_SHARED=$PWD/.devdata NUMBA_CACHE_DIR=/tmp/numba OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
R=/tmp/gpu_runs; mkdir -p $R
PY=python3
nvidia-smi -L; lscpu | grep "Model name"
$PY -c "import torch, sys; sys.path.insert(0,'.'); print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda'); import core.methods.pica, core.methods.deepdiffusion, core.methods.deepcluster; print('imports ok')" || exit 3
DRY=${DRY:-0}
if [ "$DRY" = 1 ]; then E=1; ED=1; B=20; T=300; DEV=cpu; LIM="--train-limit 64"; NT="--n-train 600 --n-test 600 --n-val 60"; else E=300; ED=30; B=${BUDGET:-320}; T=${TLIM:-455}; DEV=cuda; LIM=""; NT=""; fi
DD="bench/deepdiffusion.py --datasets modelnet10 --n-points 256 --threads 2 --device $DEV $LIM"
DC="bench/deep_clustering.py --threads 2 --device $DEV --probe-size 0 --budget-s $B --data .devdata/data $NT"
timeout $T $PY $DD --configs reference --epochs $E --curve-every $([ $DRY = 1 ] && echo 1 || echo 10) --out $R/dd_ref300 > $R/dd_ref300.log 2>&1 & P="$P $!"
timeout $T $PY $DD --configs default --epochs $ED --curve-every $([ $DRY = 1 ] && echo 1 || echo 5) --skip-baselines --out $R/dd_default30 > $R/dd_default30.log 2>&1 & P="$P $!"
timeout $T $PY $DD --configs memlr,instance --config 'memlr={"batch_size":16,"k":20,"lam":1.0,"memory_lr":0.001}' --config 'instance={"batch_size": 32, "lr": 0.001, "lam": 0.0, "temperature": 0.1, "normalize_memory": true, "memory_init": "batch", "memory_update": "momentum", "memory_momentum": 0.5, "lr_schedule": "cosine", "warmup_epochs": 1.0, "precise_bn": true}' --epochs $ED --curve-every $([ $DRY = 1 ] && echo 1 || echo 5) --skip-baselines --out $R/dd_explore > $R/dd_explore.log 2>&1 & P="$P $!"
timeout $T $PY $DC --datasets organamnist --epochs 200 --sd-epochs 0 --dc-epochs 0 --out $R/pica > $R/pica.log 2>&1 & P="$P $!"
timeout $T $PY $DC --datasets organamnist --epochs 0 --sd-epochs 200 --dc-epochs 0 --out $R/pica_sd > $R/pica_sd.log 2>&1 & P="$P $!"
timeout $T $PY $DC --datasets organamnist --epochs 0 --sd-epochs 0 --dc-epochs 200 --out $R/dc > $R/dc.log 2>&1 & P="$P $!"
timeout $T $PY $DC --datasets organamnist --epochs 200 --sd-epochs 0 --dc-epochs 0 --backbone resnet18 --out $R/pica_r18 > $R/pica_r18.log 2>&1 & P="$P $!"
timeout $T $PY ${DC/--budget-s $B/--budget-s $((B/3))} --datasets breastmnist --epochs 200 --sd-epochs 200 --dc-epochs 200 --out $R/breast > $R/breast.log 2>&1 & P="$P $!"
( while sleep 60; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) > $R/gpu_util.log 2>&1 &
UTIL=$!
wait $P
kill $UTIL 2>/dev/null
for f in $R/*.log; do echo "=== $f"; tail -c 2500 $f; done
tar czf ${OUT:-/tmp}/gpu_runs.tgz --exclude='*.pt' -C /tmp gpu_runs
ls -la ${OUT:-/tmp}
