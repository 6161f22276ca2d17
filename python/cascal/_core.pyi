"""Type stubs of the Rust extension module ``cascal._core``.

Call these through :mod:`cascal.kernels`, which validates and converts input first.
"""

from typing import Optional

import numpy as np
import numpy.typing as npt

__version__: str

def num_threads() -> int: ...

# ---- distance (owner: distance kernels) ----

# ---- end distance ----

# ---- niche (owner: distance kernels) ----

# ---- end niche ----

# ---- linkage (owner: linkage kernels) ----

# ---- end linkage ----

# ---- consensus (owner: consensus/routing kernels) ----

# ---- end consensus ----

# ---- routing (owner: consensus/routing kernels) ----

# ---- end routing ----
