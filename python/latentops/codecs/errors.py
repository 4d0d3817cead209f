"""The error of a compressed matrix or file that is not what its format says."""


class CorruptedFileError(ValueError):
    """A compressed matrix, or a file of them, is truncated, corrupted or hostile: the message names
    the tensor and what is wrong. Raised by load_file and from_parts before anything is decoded
    from it; sizes are checked against the file before anything is allocated (decode() itself
    allocates the dense matrix of the declared shape)."""
