"""The error of a compressed matrix or file that is not what its format says."""


class CorruptedFileError(ValueError):
    """A compressed matrix, or a file of them, is truncated, corrupted or hostile: the message names
    the tensor and what is wrong. Raised before anything is decoded or allocated from it."""
