"""Prototype: does keeping a coarse left/right layout in the pooled features separate the lateral pairs?"""
import sys, numpy as np, time
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/bench")
import torch; torch.set_num_threads(1)
import torch.nn.functional as F
from pathlib import Path
from deep_clustering import load_medmnist
from core.jobs.checkpoint import load_checkpoint
from core.methods.pica import PICA
from core.methods.augment2d import to_unit_tensor
from core.metrics.clustering import hungarian_accuracy, nmi
from sklearn.cluster import KMeans
from sklearn.neighbors import KNeighborsClassifier
from sklearn.decomposition import PCA
which = sys.argv[1]
data = load_medmnist("organamnist", Path("/work/shared/data"), 0, 0, 0, 0)
m = PICA().load_state_dict(load_checkpoint("/tmp/runs/pica_s0/organamnist-PICA.pt")); m.mixed_precision = "off"
trunk = m.model_.trunk
if which == "untrained":
    from core.models.backbones2d import build_backbone
    torch.manual_seed(0); trunk = build_backbone("convnet_small")
    # BN stats of one pass
trunk.eval()
x = m._images(data.x)
cache = Path(f"/tmp/sp/maps_{which}.npy")
if cache.exists():
    maps = np.load(cache)
else:
    out = []
    t = time.time()
    with torch.no_grad():
        if which == "untrained":
            trunk.train()
            for i in range(0, 20000, 512): trunk.features(to_unit_tensor(x[i:i+512], "cpu"))
            trunk.eval()
        for i in range(0, len(x), 512):
            fm = trunk.features(to_unit_tensor(x[i:i + 512], "cpu"))
            out.append(F.adaptive_avg_pool2d(fm, 3).numpy().astype(np.float32))
    maps = np.concatenate(out); np.save(cache, maps); print("maps", maps.shape, time.time() - t, flush=True)
mt = torch.from_numpy(maps)
feats = {
    "gap": mt.mean((2, 3)).numpy(),
    "LR halves": torch.stack([mt[..., :, :1].mean((2, 3)) * 0 + mt[..., :2].mean((2, 3)), mt[..., 1:].mean((2, 3))], 1).flatten(1).numpy(),
    "3x3": mt.flatten(1).numpy(),
}
y = data.class_index; tr = np.flatnonzero(data.split == "train"); te = data.split == "test"; trm = data.split == "train"
rng = np.random.default_rng(0); lab = rng.choice(tr, len(tr) // 10, replace=False)
names = ["blad","femL","femR","heart","kidL","kidR","liver","lungL","lungR","panc","spleen"]
def l2(a): return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
for name, f in feats.items():
    g = l2(f)
    knn = KNeighborsClassifier(20).fit(g[lab], y[lab]); pred = knn.predict(g[te])
    rec = [np.mean(pred[y[te] == i] == i) for i in range(11)]
    z = PCA(50, whiten=True, random_state=0).fit(g[tr]).transform(g); z = l2(z)
    res = []
    for feat_name, h in (("l2", g), ("pcaw50", z)):
        km = KMeans(11, n_init=4, random_state=0).fit(h[trm]); lb = km.predict(h)
        km88 = KMeans(88, n_init=1, random_state=0).fit(h[trm]); l88 = km88.predict(h)
        # purity of 88
        pur = sum(np.bincount(y[te][l88[te] == c]).max() for c in np.unique(l88[te])) / te.sum()
        res.append(f"{feat_name}: km11 train {hungarian_accuracy(y[trm], lb[trm]):.3f}/{nmi(y[trm], lb[trm]):.3f} test {hungarian_accuracy(y[te], lb[te]):.3f}/{nmi(y[te], lb[te]):.3f} pur88 {pur:.3f}")
    print(f"[{which}] {name:10s} dim {f.shape[1]} kNN20 {np.mean(pred == y[te]):.3f} | " + " ".join(f"{n} {r:.2f}" for n, r in zip(names, rec)), flush=True)
    for r in res: print("      ", r, flush=True)
