#!/bin/bash
# Second GPU check: the reference DeepDiffusion schedule with the GPU nearly alone (as many of the
# 300 epochs as fit), beside DeepCluster with DeepMCAT's VGG-16-BN trunk.
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1 LATENTMAP_SHARED=$PWD/.devdata NUMBA_CACHE_DIR=/tmp/numba OMP_NUM_THREADS=4 MKL_NUM_THREADS=4
R=/tmp/gpu_runs2; mkdir -p $R; T=${TLIM:-215}
timeout $T python3 bench/deepdiffusion.py --datasets modelnet10 --n-points 256 --threads 4 --device cuda --configs reference --epochs 300 --curve-every 10 --skip-baselines --out $R/dd_ref > $R/dd_ref.log 2>&1 & P="$!"
timeout $T python3 bench/deep_clustering.py --threads 4 --device cuda --probe-size 0 --budget-s ${BUDGET:-150} --data .devdata/data --datasets organamnist --epochs 0 --sd-epochs 0 --dc-epochs 200 --dc-backbone vgg16_bn --out $R/dc_vgg > $R/dc_vgg.log 2>&1 & P="$P $!"
wait $P
for f in $R/*.log; do echo "=== $f"; grep -v "features for k-means" $f | tail -c 3000; done
tar czf ${OUT:-/tmp}/gpu_runs2.tgz --exclude='*.pt' -C /tmp gpu_runs2
