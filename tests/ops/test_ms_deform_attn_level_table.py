"""The level table is checked even when nothing is sampled (n_points = 0), and MSDeformAttn names a level table
with the wrong number of levels (a list or a tensor) instead of failing with a torch broadcast error."""
import pytest
import torch

import semask_kernels as sk


@pytest.mark.parametrize("points", [0, 2])
def test_a_wrong_level_table_is_an_error_with_any_number_of_points(points):
    value = torch.randn(1, 20, 2, 4)
    loc, weights = torch.rand(1, 5, 2, 2, points, 2), torch.rand(1, 5, 2, 2, points)
    assert sk.ms_deform_attn(value, [(4, 4), (2, 2)], [0, 16], loc, weights).shape == (1, 5, 8)
    with pytest.raises(ValueError, match="level_start_index must be the start of each level"):
        sk.ms_deform_attn(value, [(4, 4), (2, 2)], [0, 10], loc, weights)
    with pytest.raises(ValueError, match="cover Σ H·W = 25 tokens, but value has S = 20"):
        sk.ms_deform_attn(value, [(4, 4), (3, 3)], [0, 16], loc, weights)


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("shapes", [[(4, 4)], [(4, 4), (2, 2), (1, 1)], [(4, 4, 1), (2, 2, 1)]])
def test_msdeformattn_names_a_level_table_of_another_size(shapes, as_tensor):
    m = sk.nn.MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    q, ref, inp = torch.randn(1, 5, 16), torch.rand(1, 5, 2, 2), torch.randn(1, 20, 16)
    assert m(q, ref, inp, [(4, 4), (2, 2)], [0, 16]).shape == (1, 5, 16)
    table = torch.tensor(shapes) if as_tensor else shapes
    with pytest.raises(ValueError, match=r"input_spatial_shapes must be \(n_levels, 2\) = \(2, 2\)"):
        m(q, ref, inp, table, [0, 16])
