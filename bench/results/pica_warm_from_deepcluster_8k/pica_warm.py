# prototype: PICA whose trunk starts from a DeepCluster checkpoint's trunk (WARM=path)
import os, sys, torch
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from core.methods import pica as P
from core.methods.deepcluster import DeepCluster
src = os.environ['WARM']
dc = DeepCluster.from_checkpoint(src)
orig = P.PICA._build
def _build(self, head_sizes, in_channels=1, image_size=28, trunk_config=None):
    orig(self, head_sizes, in_channels, image_size, trunk_config)
    if trunk_config is None:
        r = self.model_.trunk.load_state_dict(dc.model_.trunk.state_dict())
        self.optimizer_ = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        print('warm trunk from', src, r, flush=True)
P.PICA._build = _build
import deep_clustering
deep_clustering.main()
