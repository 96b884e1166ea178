"""The one exception type of the C generator."""


class CodegenError(ValueError):
    """A graph the generator cannot turn into correct C; the message names the layer and the limit."""
