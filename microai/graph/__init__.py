"""Framework-neutral model graph (IR), its importers and persistence."""

from microai.graph.ir import Graph, GraphError, Node, QFormat

__all__ = ["Graph", "GraphError", "Node", "QFormat"]
