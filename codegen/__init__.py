"""MicroAI's C generator: graph IR -> portable C99 inference library (the paper's KerasCNN2C, redone).

``convert(graph, outdir)`` writes ``number.h``, ``model.h``, ``model.c`` and ``codegen_report.json``;
``pack_input`` lays a batch out as the C code expects; ``codegen.host`` builds and runs it natively.
"""

from codegen.convert import CodegenResult, convert, load_report
from codegen.errors import CodegenError
from codegen.host import check_against_reference, compile_host, run_host
from codegen.layout import pack_input, unpack_output

__all__ = ["CodegenError", "CodegenResult", "check_against_reference", "compile_host", "convert",
           "load_report", "pack_input", "run_host", "unpack_output"]
