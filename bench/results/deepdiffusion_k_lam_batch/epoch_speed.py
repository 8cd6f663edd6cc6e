"""Clean CPU speed of one DeepDiffusion epoch (1,000 ModelNet10 shapes, 256 points, 1 thread) per (batch, k)."""
import sys, time, numpy as np, torch
sys.path.insert(0, '.')
import os; torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from core.methods.deepdiffusion import DeepDiffusion
from core.dataset import SampleSet
z = np.load('.cache/bench_deepdiffusion/modelnet10_256.npz', allow_pickle=False)
tr = np.flatnonzero(z['split'] == 'train')
tr = np.sort(np.random.default_rng(0).choice(tr, 1000, replace=False))
data = SampleSet(ids=np.array([str(i) for i in tr]), x=z['x'][tr], y=z['y'][tr], split=np.array(['train'] * len(tr)))
for bs, k in [tuple(map(int, a.split(","))) for a in sys.argv[1:]] or [(16, 20), (16, 40), (16, 80), (32, 20)]:
    m = DeepDiffusion(epochs=2, batch_size=bs, k=k, out_dim=254, seed=0, device='cpu', eval_every=0)
    t = None; steps = 0
    for p in m.steps(data):
        if not p.losses:
            continue
        if p.epoch == 1 and t is None:
            t = time.perf_counter()
        if p.epoch == 1:
            steps += 1
    dt = time.perf_counter() - t
    print(f"batch {bs} k {k}: second epoch {dt:.1f} s, {steps * bs / dt:.1f} samples/s", flush=True)
