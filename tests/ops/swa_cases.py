"""The awkward shapes every compiled shifted_window_attention kernel is tested on (the CUDA kernels on a GPU,
the tensor-core kernels' CPU emulation): (B, H, W, window, shift) with padding on both axes, no shift, a map
smaller than the window, non-square windows, one-axis shifts, an exact multiple, a 1x1 map, windows of 4 and 24
tokens (one and two 16-row tiles)."""

CASES = [
    (1, 10, 9, (7, 7), (3, 3)),
    (2, 10, 9, (7, 7), (0, 0)),
    (2, 5, 3, (7, 7), (3, 3)),
    (1, 9, 13, (4, 6), (2, 3)),
    (1, 8, 11, (4, 4), (0, 2)),
    (1, 11, 8, (4, 4), (2, 0)),
    (2, 14, 7, (7, 7), (3, 3)),
    (1, 1, 1, (2, 2), (1, 1)),
    (1, 9, 20, (3, 8), (1, 0)),
]
