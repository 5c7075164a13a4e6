"""Builds the Cython kernels in agent/_native.

Every .pyx there becomes agent._native.<name>. A kernel that fails to compile
fails the install: there is deliberately no pure-Python fallback.

Only the kernels are compiled. The glue on a typed key's path (34 modules of
agent.service, agent.secure, agent.rfb, agent.encode, agent.changes and
agent.capture, cythonized as they are) cost more agent CPU, not less, on the
link benchmark's typing run: 0.17-0.20 s against 0.14-0.17 s in four
interleaved pairs. Between keys the agent sleeps and its caches go cold, so a
key costs what its code touches more than what it executes; compiled, that
code is several times larger.
"""
import glob
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILE_ARGS = ["-O3", "-fno-strict-aliasing"] if sys.platform != "win32" else ["/O2"]

extensions = [
    Extension(
        "agent._native." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[numpy.get_include()],
        extra_compile_args=COMPILE_ARGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob.glob(os.path.join("agent", "_native", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
