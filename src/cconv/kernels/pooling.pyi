from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

def max_pool2d(
    x: ArrayLike,
    pool_h: int,
    pool_w: int,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    *,
    out: NDArray[np.floating] | None = None,
    argmax_out: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.int64]]: ...
def max_pool2d_backward(
    dout: ArrayLike,
    argmax: NDArray[np.integer],
    input_shape: Sequence[int],
    pool_h: int,
    pool_w: int,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]: ...
def avg_pool2d(
    x: ArrayLike,
    pool_h: int,
    pool_w: int,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    count_include_pad: bool = True,
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]: ...
def avg_pool2d_backward(
    dout: ArrayLike,
    input_shape: Sequence[int],
    pool_h: int,
    pool_w: int,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    count_include_pad: bool = True,
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]: ...
