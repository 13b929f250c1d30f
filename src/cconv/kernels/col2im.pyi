from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

def col2im(
    col: ArrayLike,
    input_shape: Sequence[int],
    filter_h: int,
    filter_w: int,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]: ...
