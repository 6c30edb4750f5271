"""The compiled core (core/, Rust) is built with the package where a Rust toolchain is found, and
left out where none is: the package then runs its Python engine (anonymizer/core.py says which
engine runs; README: "The compiled core")."""

from setuptools import setup
from setuptools_rust import Binding, RustExtension

setup(
    rust_extensions=[
        RustExtension(
            "anonymizer._core",
            path="core/Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api="auto",
            debug=False,  # also for editable installs: tests and benchmarks run the real thing
            optional=True,  # no Rust toolchain (or no crates.io): the Python engine only
        )
    ],
)
