"""Framework-neutral model graph (IR), its importers and persistence."""

from microai.graph.ir import AffineFormat, Graph, GraphError, Node, QFormat

__all__ = ["AffineFormat", "Graph", "GraphError", "Node", "QFormat"]
