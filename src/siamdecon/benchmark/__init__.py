"""Benchmarks: the paper's protocol and the microscopy suite; runners, reports and figures, FFT timing.

>>> from siamdecon.benchmark import BenchmarkSettings, run_benchmark, write_report  # doctest: +SKIP
>>> run_benchmark("bench", BenchmarkSettings(images_2d=["camera"], volumes_3d=0))     # doctest: +SKIP
>>> write_report("bench")                                                            # doctest: +SKIP
>>> from siamdecon.benchmark import MicroscopySettings, run_microscopy               # doctest: +SKIP
>>> run_microscopy("bench-microscopy", MicroscopySettings(quick=True))               # doctest: +SKIP
>>> write_report("bench-microscopy")                                                 # doctest: +SKIP
"""

from .microscopy import GROUPS, MICROSCOPY_METHODS, MicroscopySettings, microscopy_cases, run_microscopy
from .report import PAPER_RESULTS, summarize, write_report
from .runner import LR_ITERATIONS, NETWORK_METHODS, BenchmarkSettings, load_results, run_benchmark
from .speed import fft_speed_table, time_convolution
from .suites import IMAGES_2D, QUICK_2D, Case, suite_2d, suite_3d

__all__ = [
    "BenchmarkSettings",
    "Case",
    "GROUPS",
    "MICROSCOPY_METHODS",
    "MicroscopySettings",
    "IMAGES_2D",
    "LR_ITERATIONS",
    "NETWORK_METHODS",
    "PAPER_RESULTS",
    "QUICK_2D",
    "fft_speed_table",
    "load_results",
    "microscopy_cases",
    "run_microscopy",
    "run_benchmark",
    "suite_2d",
    "suite_3d",
    "summarize",
    "time_convolution",
    "write_report",
]
