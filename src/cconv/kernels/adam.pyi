import numpy as np
from numpy.typing import NDArray

def adam_update_accepts(param: object, grad: object, m: object, v: object) -> bool: ...
def adam_update(
    param: NDArray[np.floating],
    grad: NDArray[np.floating],
    m: NDArray[np.floating],
    v: NDArray[np.floating],
    lr_t: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None: ...
