"""Stage quantize: the float graph IR of a checkpoint, PTQ formats or quantization-aware training."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from microai.config import section, write_json


def import_graph(ckpt: Path, prepared_npz: Path, out_graph: Path) -> None:
    """Trained PyTorch checkpoint -> float32 graph IR artifact (torch.fx)."""
    from microai.data import load_prepared
    from microai.graph.torch_import import from_torch
    from microai.train import load_checkpoint

    data = load_prepared(Path(prepared_npz))
    graph = from_torch(load_checkpoint(Path(ckpt)), data.input_shape, name=Path(ckpt).parent.parent.name)
    graph.save(out_graph)


def quantize_ptq(graph_path: Path, prepared_npz: Path, precision: dict[str, Any], out_graph: Path) -> None:
    """Post-training quantization calibrated on training data: the paper's power-of-two scheme (rounding to
    nearest unless the precision asks for the paper's floor/truncation), or TFLite's (``scheme: tflite``),
    calibrated like TFLite's converter on evenly spaced training inputs."""
    from microai.data import load_prepared
    from microai.graph import Graph
    from microai.quant.ptq import quantize_ptq as ptq

    data = load_prepared(Path(prepared_npz))
    if precision.get("scheme", "pow2") == "tflite":
        from microai.quant.affine import quantize_tflite
        from microai.tflite.convert import representative_samples

        calibration = representative_samples(data.x_train, precision.get("calibration_samples", 1000))
        quantized = quantize_tflite(Graph.load(graph_path), calibration,
                                    activations=precision.get("activations", 8),
                                    int16_layers=precision.get("int16_layers", ()))
        quantized.save(out_graph)
        return
    n = precision.get("calibration_samples", len(data.x_train))
    quantized = ptq(
        Graph.load(graph_path), data.x_train[:n], width=precision["width"],
        granularity=precision.get("granularity", "layer"), fixed_frac=precision.get("fixed_frac"),
        rounding=precision.get("rounding", "nearest"),
        quant_rounding=precision.get("quant_rounding", "nearest"),
    )
    quantized.save(out_graph)


def quantize_qat(ckpt: Path, prepared_npz: Path, run: int, qat_schedule: dict[str, Any],
                 precision: dict[str, Any], out_graph: Path, out_metrics: Path, threads: int = 1) -> None:
    """Quantization-aware training from the trained float model, exported with its learned formats.

    ``threads`` sets the speed only: the exported graph is the same for any value.
    """
    from microai.data import load_prepared
    from microai.quant.qat import export_qat, train_qat
    from microai.train import TrainConfig, load_checkpoint

    data = load_prepared(Path(prepared_npz))
    net = load_checkpoint(Path(ckpt))
    cfg = TrainConfig.from_dict({**qat_schedule, "num_threads": threads})
    if precision.get("scheme", "pow2") == "tflite":
        from microai.graph.torch_import import from_torch
        from microai.quant.affine_qat import train_qat_tflite

        graph, history = train_qat_tflite(
            from_torch(net, data.input_shape, name=Path(ckpt).parent.parent.name), data.x_train, data.y_train,
            cfg, seed=run, activations=precision.get("activations", 8),
            int16_layers=precision.get("int16_layers", ()),
            calibration_samples=precision.get("calibration_samples", 1000))
        graph.save(out_graph)
        write_json(out_metrics, {"run": run, "scheme": "tflite", "history": history})
        return
    qat_model, history = train_qat(
        net, data.x_train, data.y_train, cfg, width=precision["width"],
        seed=run, granularity=precision.get("granularity", "layer"),
        rounding=precision.get("rounding", "floor"), quant_rounding=precision.get("quant_rounding"),
    )
    graph = export_qat(qat_model, data.input_shape, precision["width"])
    graph.save(out_graph)
    write_json(out_metrics, {"run": run, "width": precision["width"], "history": history})


def quantize(precision_name: str, params: dict[str, Any], ckpt: Path, prepared_npz: Path, run: int,
             out_graph: Path, out_metrics: Path, threads: int = 1) -> None:
    """Any precision from the trained checkpoint, dispatched on its method (float / ptq / qat).

    DVC's matrix stages cannot select precisions by method, so its single ``quantize`` stage
    calls this; Snakemake has one rule per method.
    """
    precision = section(params, "precisions", precision_name)
    method = precision["method"]
    with tempfile.TemporaryDirectory() as tmp:
        float_graph = Path(tmp) / "float32.json"
        import_graph(ckpt, prepared_npz, float_graph)
        if method == "float":
            from microai.graph import Graph

            Graph.load(float_graph).save(out_graph)
        elif method == "ptq":
            quantize_ptq(float_graph, prepared_npz, precision, out_graph)
        else:
            schedule = section(params, "qat", Path(prepared_npz).stem)
            quantize_qat(ckpt, prepared_npz, run, schedule, precision, out_graph, out_metrics, threads)
            return
    write_json(out_metrics, {"run": run, "method": method, "precision": precision})
