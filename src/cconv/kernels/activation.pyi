import numpy as np
from numpy.typing import ArrayLike, NDArray

def relu_with_mask(
    x: ArrayLike,
    *,
    out: NDArray[np.floating] | None = None,
    mask_out: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.bool_]]: ...
def relu_backward(
    dout: ArrayLike,
    mask: NDArray[np.bool_],
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]: ...
