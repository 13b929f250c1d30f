import numpy as np
from numpy.typing import ArrayLike, NDArray

def im2col(
    input_data: ArrayLike,
    filter_h: int,
    filter_w: int,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]: ...
