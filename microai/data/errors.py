"""The one exception type of the data layer."""


class DatasetError(Exception):
    """A dataset that cannot be fetched, read or prepared.

    Raised for a corrupt, truncated or wrong-checksum archive, a file missing from an archive,
    inconsistent files inside an archive and a bad configuration. The message names the file,
    member or configuration key at fault.
    """
