import numpy as np
from numpy.typing import ArrayLike, NDArray

def conv2d(
    x: ArrayLike,
    W: ArrayLike,
    b: ArrayLike | None = None,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]: ...
def conv2d_backward(
    dout: ArrayLike,
    x: ArrayLike,
    W: ArrayLike,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    *,
    need_input_grad: bool = True,
) -> tuple[NDArray[np.floating] | None, NDArray[np.floating], NDArray[np.floating]]: ...
