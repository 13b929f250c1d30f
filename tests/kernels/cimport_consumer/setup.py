"""Build the cimport consumer in place: ``python setup.py build_ext --inplace``.

``CCONV_INCLUDE_DIR`` is the folder holding the installed ``cconv/kernels/*.pxd``
(test_cimport.py finds it from the installed package and sets it).
"""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

if __name__ == "__main__":
    include_dir = os.environ["CCONV_INCLUDE_DIR"]
    extension = Extension(
        "cconv_cimport_consumer",
        ["cconv_cimport_consumer.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    setup(
        name="cconv_cimport_consumer",
        ext_modules=cythonize(
            [extension], include_path=[include_dir], compiler_directives={"language_level": 3}
        ),
        script_args=["build_ext", "--inplace"],
    )
