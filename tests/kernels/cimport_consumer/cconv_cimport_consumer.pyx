# cython: language_level=3, boundscheck=False, wraparound=False
"""A third-party module that uses the C API of the installed cconv.

It cimports every ``.pxd`` that cconv installs and calls each ``noexcept nogil``
core without the GIL, as downstream Cython code would. The caller (the test)
validates the arguments and allocates the outputs, as the cores require.
"""

from cython cimport floating
from libc.stdint cimport int64_t

from cconv.kernels.activation cimport relu_backward_core, relu_core
from cconv.kernels.adam cimport adam_update_core
from cconv.kernels.col2im cimport col2im_core
from cconv.kernels.conv cimport conv2d_backward_core, conv2d_core
from cconv.kernels.im2col cimport im2col_core
from cconv.kernels.pooling cimport (
    avg_pool2d_backward_core,
    avg_pool2d_core,
    max_pool2d_backward_core,
    max_pool2d_core,
)


def im2col(const floating[:, :, :, :] x, Py_ssize_t filter_h, Py_ssize_t filter_w,
           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
           Py_ssize_t dilation_h, Py_ssize_t dilation_w, floating[:, ::1] col, int num_threads):
    with nogil:
        im2col_core(x, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w,
                    dilation_h, dilation_w, col, num_threads)


def col2im(const floating[:, :] col, Py_ssize_t filter_h, Py_ssize_t filter_w,
           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
           Py_ssize_t dilation_h, Py_ssize_t dilation_w, floating[:, :, :, ::1] img,
           int num_threads):
    with nogil:
        col2im_core(col, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w,
                    dilation_h, dilation_w, img, num_threads)


def conv2d(const floating[:, :, :, :] x, const floating[:, :, :, ::1] weight,
           const floating[::1] bias, Py_ssize_t stride_h, Py_ssize_t stride_w,
           Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
           floating[:, :, :, ::1] out, int num_threads):
    cdef int status
    with nogil:
        status = conv2d_core(x, weight, bias, stride_h, stride_w, pad_h, pad_w,
                             dilation_h, dilation_w, out, num_threads)
    return status


def conv2d_backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, :] x,
                    const floating[:, :, :, ::1] weight, Py_ssize_t stride_h, Py_ssize_t stride_w,
                    Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dilation_h,
                    Py_ssize_t dilation_w, floating[:, :, :, ::1] dx,
                    floating[:, :, :, ::1] dweight, floating[::1] dbias, bint need_input_grad,
                    int num_threads):
    cdef int status
    with nogil:
        status = conv2d_backward_core(dout, x, weight, stride_h, stride_w, pad_h, pad_w,
                                      dilation_h, dilation_w, dx, dweight, dbias,
                                      need_input_grad, num_threads)
    return status


def max_pool2d(const floating[:, :, :, :] x, Py_ssize_t pool_h, Py_ssize_t pool_w,
               Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
               floating[:, :, :, ::1] out, int64_t[:, :, :, ::1] argmax, int num_threads):
    with nogil:
        max_pool2d_core(x, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                        out, argmax, num_threads)


def max_pool2d_backward(const floating[:, :, :, :] dout, const int64_t[:, :, :, :] argmax,
                        Py_ssize_t pool_h, Py_ssize_t pool_w,
                        Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                        floating[:, :, :, ::1] dx, int num_threads):
    with nogil:
        max_pool2d_backward_core(dout, argmax, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                                 dx, num_threads)


def avg_pool2d(const floating[:, :, :, :] x, Py_ssize_t pool_h, Py_ssize_t pool_w,
               Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
               bint count_include_pad, floating[:, :, :, ::1] out, int num_threads):
    with nogil:
        avg_pool2d_core(x, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                        count_include_pad, out, num_threads)


def avg_pool2d_backward(const floating[:, :, :, :] dout, Py_ssize_t pool_h, Py_ssize_t pool_w,
                        Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                        bint count_include_pad, floating[:, :, :, ::1] dx, int num_threads):
    with nogil:
        avg_pool2d_backward_core(dout, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                                 count_include_pad, dx, num_threads)


def explicit_double_im2col(const double[:, :, :, :] x, Py_ssize_t filter_h, Py_ssize_t filter_w,
                           double[:, ::1] col):
    """The spelling of the docs: an explicit ``[double]`` specialisation."""
    with nogil:
        im2col_core[double](x, filter_h, filter_w, 1, 1, 0, 0, 1, 1, col, 1)


def relu(const floating[::1] x, floating[::1] out, unsigned char[::1] mask, int num_threads):
    with nogil:
        relu_core(x, out, mask, num_threads)


def relu_backward(const floating[::1] dout, const unsigned char[::1] mask, floating[::1] dx,
                  int num_threads):
    with nogil:
        relu_backward_core(dout, mask, dx, num_threads)


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] v,
                double lr_t, double beta1, double beta2, double eps, int num_threads):
    with nogil:
        adam_update_core(param, grad, m, v, lr_t, beta1, beta2, eps, num_threads)
