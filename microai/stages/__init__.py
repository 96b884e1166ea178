"""One function per pipeline stage: what each Snakemake rule and DVC stage runs, callable from a notebook.

Each stage reads files, calls the library and writes its outputs atomically; the scripts in
``workflow/scripts`` are argparse wrappers around these functions. One module per stage family,
so that the stage table (:mod:`microai.pipeline`) can name the code of each stage: editing the
measure stage reruns measure, not training.
"""

from microai.stages.accuracy import evaluate
from microai.stages.boards import flash
from microai.stages.data import download, prepare
from microai.stages.deploy import compile_firmware, measure
from microai.stages.host import check_host
from microai.stages.quant import import_graph, quantize, quantize_ptq, quantize_qat
from microai.stages.report import aggregate
from microai.stages.tflite import convert_tflite, evaluate_tflm
from microai.stages.tflm import compile_tflm_firmware, measure_tflm, tflm_library
from microai.stages.train import train_float

__all__ = ["aggregate", "check_host", "compile_firmware", "compile_tflm_firmware", "convert_tflite",
           "download", "evaluate", "evaluate_tflm", "flash", "import_graph", "measure", "measure_tflm",
           "prepare", "quantize", "quantize_ptq", "quantize_qat", "tflm_library", "train_float"]
