"""Write .keras files with the 0.1 layout (flat package), for the compat test.

Run once at commit e23ff08 (before the subpackage layout) from the repository
root: `python tests/data/saved_0_1/make.py`. It imports the old module paths,
so it does not run on later commits; the files it wrote are the point.
"""
import numpy as np, keras
from mpath_tf.models import build_supernet, adapt_normalization
from mpath_tf.derivation import derive
from mpath_tf.gates import HyperSupernet
from mpath_tf.io import atomic_save_model
out = "tests/data/saved_0_1"
rng = np.random.default_rng(0)
x = rng.normal(size=(5, 6)).astype("float32") * 3 + 1
net = build_supernet((6,), 3, depth=3, width=8, seed=0, normalize=True)
adapt_normalization(net, x)
model = derive(net, 3)
hyper = HyperSupernet((6,), 3, depth=3, width=8, lam_max=1.0)
hyper.build((None, 6))
for name, m in [("supernet", net), ("derived_b3", model), ("hypersupernet", hyper)]:
    atomic_save_model(m, f"{out}/{name}.keras")
np.savez(f"{out}/expected.npz", x=x, supernet=net.predict(x, verbose=0),
         derived_b3=model.predict(x, verbose=0), hypersupernet=hyper.predict(x, verbose=0))
