import sys, numpy as np, torch
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
torch.set_num_threads(1)
from deep_clustering import load_medmnist
from core.methods.deepcluster import DeepCluster, fit_preprocessing, apply_preprocessing, kmeans_faiss_style, _assign
from core.metrics.clustering import purity, nmi
ntr, nte = int(sys.argv[1]), int(sys.argv[2])
data = load_medmnist("organamnist", ROOT.parent / "shared" / "data", ntr, 0, nte, 0)
tr = data.split == "train"; te = data.split == "test"
y = data.y.argmax(1) if data.y.ndim == 2 else data.y
for ck in sys.argv[3:]:
    m = DeepCluster.from_checkpoint(ck)
    f = m.transform(data)
    x, pca = fit_preprocessing(f[tr], 64)
    for s in (0, 1):
        a, c, _ = kmeans_faiss_style(x, 88, n_iter=20, seed=s)
        at = _assign(torch.as_tensor(apply_preprocessing(f[te], pca)), torch.as_tensor(c))[0].numpy()
        print(ck, "seed", s, "purity88 test", round(purity(y[te], at), 3), "nmi", round(nmi(y[te], at), 3), flush=True)
    own = m.predict_clusters(data)
    print(ck, "own", m.k_, "purity", round(purity(y[te], own[te]), 3))
